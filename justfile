# Each recipe is one plain command that works without `just`.

# the main example
example:
    cargo run --example processes

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

# what CI runs
ci:
    .ci/run
