//! left4me-health: the per-instance health check (see docs/health.md).
fn main() -> std::process::ExitCode {
    left4me::health_main()
}
