use clap::Parser;
fn main() {
    let cli = left4me::cli::Cli::parse();
    println!("{cli:?}");
}
