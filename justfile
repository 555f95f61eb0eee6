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

# aiop against the floors, the Rust peers and the Python anchors, one run, one table
# (`just compare --rounds 5`, `just compare --quick`)
compare *ARGS:
    cargo run --release -p aiop-bench --bin aiop-compare -- {{ARGS}}

# fuzz a connection target (`frames` or `handshake`) for 5 minutes; needs `cargo install
# cargo-fuzz`; runs on the stable toolchain through RUSTC_BOOTSTRAP (cargo fuzz passes nightly
# flags); not part of CI (tests/fuzz_corpus.rs replays the committed corpus)
fuzz target="frames":
    cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {{target}} corpus/{{target}} -- -malloc_limit_mb=256 -max_total_time=300

# what CI runs
ci:
    .ci/run
