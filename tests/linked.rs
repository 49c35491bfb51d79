//! "The root helper has no IP network code" as a fact of the linked binary,
//! not of a reading of the sources. One crate builds both programs; the
//! linker keeps in each only what its main reaches, so the helper's symbols
//! (nm, test profile: not stripped) name no socket address, no way to make
//! or connect an IP socket, and nothing of `left4me::a2s`, the A2S client.
//! The health check's do, which shows the check can see network code where
//! there is some. The helper does talk over one Unix socket, the request
//! server's (src/requests.rs), which systemd hands it already listening:
//! std's `UnixStream` reads, writes and timeouts are the same machine code
//! as `TcpStream`'s, and the linker keeps one copy under either name, so
//! those names alone are no sign of IP code. Why one crate and not a
//! workspace: docs/helper.md, "How it is built".

use std::process::Command;

fn symbols(exe: &str) -> String {
    let out = Command::new("nm")
        .args(["--demangle", exe])
        .output()
        .unwrap_or_else(|e| panic!("cannot run nm (binutils) on {exe}: {e}"));
    assert!(
        out.status.success(),
        "nm {exe}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn network(symbol: &&str) -> bool {
    [
        "std::net::socket_addr::",
        "std::net::tcp::TcpStream::connect",
        "std::net::tcp::TcpListener::bind",
        "std::net::udp::UdpSocket::bind",
        "std::net::udp::UdpSocket::connect",
        "left4me::a2s::",
    ]
    .iter()
    .any(|n| symbol.contains(n))
}

#[test_log::test]
fn the_root_helper_links_no_network_code() {
    let helper = symbols(env!("CARGO_BIN_EXE_left4me-overlay"));
    assert!(
        helper.lines().count() > 1000,
        "nm listed almost nothing: a stripped binary?"
    );
    let found: Vec<&str> = helper.lines().filter(network).take(5).collect();
    assert!(
        found.is_empty(),
        "left4me-overlay links IP network code: {found:#?}"
    );
    let health = symbols(env!("CARGO_BIN_EXE_left4me-health"));
    assert!(
        health.lines().any(|l| network(&l)),
        "left4me-health shows no network symbol: the check cannot see what it looks for"
    );
}
