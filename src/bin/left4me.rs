//! left4me: the admin command (see docs/admin.md).
fn main() -> std::process::ExitCode {
    left4me::admin_main()
}
