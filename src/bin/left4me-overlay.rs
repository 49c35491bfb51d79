fn main() -> std::process::ExitCode {
    left4me::main()
}
