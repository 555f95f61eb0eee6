# Each recipe is one plain command that works without `just`.

# the main example
example:
    cargo run --example quickstart

# every test
test:
    cargo test --workspace

fmt:
    cargo fmt --all

clippy:
    cargo clippy --workspace --all-targets -- -D warnings

doc:
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# benchmarks, e.g. `just bench spawn_join floor`
bench *PREFIXES:
    cargo run --release -p aiop-bench -- {{PREFIXES}}

# aiop-bench and the Python anchors in one run, for same-run ratios
compare:
    crates/aiop-bench/compare.sh

# fuzz a connection target (`frames` or `handshake`); needs nightly and
# `cargo install cargo-fuzz`; not part of CI (tests/fuzz_corpus.rs replays the corpus)
fuzz target="frames":
    cd fuzz && cargo +nightly fuzz run {{target}} corpus/{{target}} -- -malloc_limit_mb=64 -max_total_time=300

# what CI runs
ci:
    .ci/run
