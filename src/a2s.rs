//! A2S_INFO, the Source engine's server query, as the health check uses it:
//! one query to one server, bounded by a timeout, answering with what the
//! server says about itself or with why there was no usable answer.
//!
//! Since the December 2020 engine update a server may answer the first query
//! with a challenge (`'A'` and four bytes) instead of the info; the query is
//! then repeated with those four bytes appended. Servers that still answer at
//! once are handled too. Reference: Valve Developer Community, "Server queries".

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const SINGLE_PACKET: [u8; 4] = [0xff; 4];
const SPLIT_PACKET: [u8; 4] = [0xfe, 0xff, 0xff, 0xff];
const QUERY_PAYLOAD: &[u8] = b"TSource Engine Query\0";
const CHALLENGE: u8 = b'A';
const INFO: u8 = b'I';
const GOLDSRC_INFO: u8 = b'm';
/// The Ship (app 2400) inserts three bytes after the VAC flag.
const THE_SHIP: u16 = 2400;
/// A server that keeps answering with fresh challenges is misbehaving; after
/// this many the query gives up rather than spin until the timeout.
const MAX_CHALLENGES: usize = 3;
/// Largest reply a server sends in one datagram (bigger ones are split).
const MAX_PACKET: usize = 1400;

/// What a server says about itself in its A2S_INFO reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Info {
    pub protocol: u8,
    pub name: String,
    pub map: String,
    pub folder: String,
    pub game: String,
    pub app_id: u16,
    pub players: u8,
    pub max_players: u8,
    pub bots: u8,
    /// `d` dedicated, `l` listen, `p` SourceTV relay.
    pub server_type: char,
    /// `l` Linux, `w` Windows, `m`/`o` macOS.
    pub environment: char,
    pub password: bool,
    pub vac: bool,
    pub version: String,
    /// The game port from the extra data field, when the server sends it.
    pub port: Option<u16>,
}

#[cfg(test)]
impl Info {
    /// An answer like the stand-in's, for the health check's tests.
    pub(crate) fn for_test(players: u8, bots: u8) -> Info {
        Info {
            protocol: 17,
            name: "n".into(),
            map: "c1m1_hotel".into(),
            folder: "left4dead2".into(),
            game: "Left 4 Dead 2".into(),
            app_id: 550,
            players,
            max_players: 8,
            bots,
            server_type: 'd',
            environment: 'l',
            password: false,
            vac: false,
            version: "1".into(),
            port: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    Challenge([u8; 4]),
    Info(Info),
}

/// Why a datagram is not a usable reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// The datagram ended inside `field`.
    Truncated { field: &'static str, at: usize },
    /// The first four bytes are neither the single- nor the split-packet header.
    BadHeader([u8; 4]),
    /// A split (multi-datagram) reply: A2S_INFO fits one datagram, so a
    /// server sending one is not answering what was asked.
    Split,
    /// A reply type other than challenge or info.
    UnexpectedType(u8),
    /// Bytes left over after everything the reply announced.
    TrailingBytes { at: usize, count: usize },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Truncated { field, at } => {
                write!(f, "reply truncated at byte {at}, inside {field}")
            }
            ParseError::BadHeader(h) => write!(
                f,
                "reply starts with {:02x} {:02x} {:02x} {:02x}, not a Source query header",
                h[0], h[1], h[2], h[3]
            ),
            ParseError::Split => f.write_str("split (multi-packet) reply to A2S_INFO"),
            ParseError::UnexpectedType(t) if *t == GOLDSRC_INFO => {
                f.write_str("GoldSource-style info reply ('m'), not a Source server")
            }
            ParseError::UnexpectedType(t) => write!(f, "unexpected reply type 0x{t:02x}"),
            ParseError::TrailingBytes { at, count } => {
                write!(
                    f,
                    "{count} unexpected bytes after the reply, from byte {at}"
                )
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// Why a query produced no answer.
#[derive(Debug)]
pub(crate) enum QueryError {
    /// Nothing (or only challenges) came back within the timeout.
    Timeout(Duration),
    /// The kernel reported the port closed (ICMP port unreachable): nothing
    /// listens there, e.g. the server has not bound its socket yet.
    Refused,
    /// A datagram came back but is not a usable reply.
    Malformed(ParseError),
    /// The server answered every query with a new challenge.
    ChallengeLoop,
    /// The answer names another game port (the extra data's 0x80 field):
    /// whatever listens on the port asked is not the server expected there,
    /// e.g. a proxy in front of a server that moved to another port because
    /// this one was taken.
    WrongPort(u16),
    Io(io::Error),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Timeout(t) => write!(f, "no answer within {}", crate::health::secs(*t)),
            QueryError::Refused => {
                f.write_str("port closed (ICMP port unreachable): nothing listens")
            }
            QueryError::Malformed(e) => write!(f, "malformed reply: {e}"),
            QueryError::ChallengeLoop => {
                write!(
                    f,
                    "answered {MAX_CHALLENGES} queries with a new challenge each"
                )
            }
            QueryError::WrongPort(p) => write!(f, "answered by a server on port {p}"),
            QueryError::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

impl std::error::Error for QueryError {}

/// A successful query: the info and the time from the first datagram sent to
/// the info received (both round trips when the server asked for a challenge).
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub info: Info,
    pub latency: Duration,
}

/// The A2S_INFO request datagram, with the challenge the server handed out.
pub(crate) fn request(challenge: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + QUERY_PAYLOAD.len() + 4);
    out.extend_from_slice(&SINGLE_PACKET);
    out.extend_from_slice(QUERY_PAYLOAD);
    if let Some(c) = challenge {
        out.extend_from_slice(&c);
    }
    out
}

/// Sends A2S_INFO to `port` on the loopback address and waits at most
/// `timeout` in total for the info, answering challenges on the way. An
/// answer that names another game port is not this server's (a server that
/// sends no port cannot be told apart and is taken at its word).
pub(crate) fn query_local(port: u16, timeout: Duration) -> Result<Answer, QueryError> {
    let answer = query(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), timeout)?;
    match answer.info.port {
        Some(p) if p != port => Err(QueryError::WrongPort(p)),
        _ => Ok(answer),
    }
}

pub(crate) fn query(server: SocketAddr, timeout: Duration) -> Result<Answer, QueryError> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    // A fresh socket per query: a late answer to an earlier, timed-out query
    // cannot be mistaken for this one's. connect() makes the kernel drop
    // datagrams from anyone else and report ICMP port unreachable.
    let socket = UdpSocket::bind(local).map_err(QueryError::Io)?;
    socket.connect(server).map_err(QueryError::Io)?;
    let start = Instant::now();
    let deadline = start + timeout;
    let mut challenge = None;
    let mut buf = [0u8; MAX_PACKET + 1];
    for _ in 0..=MAX_CHALLENGES {
        socket.send(&request(challenge)).map_err(map_io)?;
        let n = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(QueryError::Timeout(timeout));
            }
            socket
                .set_read_timeout(Some(left))
                .map_err(QueryError::Io)?;
            match socket.recv(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(QueryError::Timeout(timeout));
                }
                Err(e) => return Err(map_io(e)),
            }
        };
        match parse_reply(&buf[..n]).map_err(QueryError::Malformed)? {
            Reply::Info(info) => {
                return Ok(Answer {
                    info,
                    latency: start.elapsed(),
                });
            }
            Reply::Challenge(c) => challenge = Some(c),
        }
    }
    Err(QueryError::ChallengeLoop)
}

fn map_io(e: io::Error) -> QueryError {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        QueryError::Refused
    } else {
        QueryError::Io(e)
    }
}

/// Parses one reply datagram: a challenge or the info.
pub(crate) fn parse_reply(datagram: &[u8]) -> Result<Reply, ParseError> {
    let mut r = Reader {
        buf: datagram,
        pos: 0,
    };
    let header = r.array::<4>("the header")?;
    if header == SPLIT_PACKET {
        return Err(ParseError::Split);
    }
    if header != SINGLE_PACKET {
        return Err(ParseError::BadHeader(header));
    }
    let reply = match r.u8("the reply type")? {
        CHALLENGE => Reply::Challenge(r.array::<4>("the challenge")?),
        INFO => Reply::Info(parse_info(&mut r)?),
        other => return Err(ParseError::UnexpectedType(other)),
    };
    r.finish()?;
    Ok(reply)
}

fn parse_info(r: &mut Reader<'_>) -> Result<Info, ParseError> {
    let protocol = r.u8("the protocol version")?;
    let name = r.string("the server name")?;
    let map = r.string("the map")?;
    let folder = r.string("the game folder")?;
    let game = r.string("the game name")?;
    let app_id = u16::from_le_bytes(r.array::<2>("the app id")?);
    let players = r.u8("the player count")?;
    let max_players = r.u8("the maximum player count")?;
    let bots = r.u8("the bot count")?;
    let server_type = char::from(r.u8("the server type")?);
    let environment = char::from(r.u8("the environment")?);
    let password = r.u8("the visibility flag")? != 0;
    let vac = r.u8("the VAC flag")? != 0;
    if app_id == THE_SHIP {
        r.array::<3>("The Ship's mode, witnesses and duration")?;
    }
    let version = r.string("the version")?;
    let mut port = None;
    if !r.at_end() {
        let edf = r.u8("the extra data flag")?;
        if edf & 0x80 != 0 {
            port = Some(u16::from_le_bytes(r.array::<2>("the game port")?));
        }
        if edf & 0x10 != 0 {
            r.array::<8>("the server's SteamID")?;
        }
        if edf & 0x40 != 0 {
            r.array::<2>("the SourceTV port")?;
            r.string("the SourceTV name")?;
        }
        if edf & 0x20 != 0 {
            r.string("the keywords")?;
        }
        if edf & 0x01 != 0 {
            r.array::<8>("the game id")?;
        }
    }
    Ok(Info {
        protocol,
        name,
        map,
        folder,
        game,
        app_id,
        players,
        max_players,
        bots,
        server_type,
        environment,
        password,
        vac,
        version,
        port,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn truncated(&self, field: &'static str) -> ParseError {
        ParseError::Truncated {
            field,
            at: self.buf.len(),
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ParseError> {
        let end = self.pos + N;
        let bytes = self.buf.get(self.pos..end).ok_or(self.truncated(field))?;
        self.pos = end;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, ParseError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// NUL-terminated; server names are not always UTF-8, so lossy.
    fn string(&mut self, field: &'static str) -> Result<String, ParseError> {
        let rest = &self.buf[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(self.truncated(field))?;
        self.pos += len + 1;
        Ok(String::from_utf8_lossy(&rest[..len]).into_owned())
    }

    fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    fn finish(&self) -> Result<(), ParseError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(ParseError::TrailingBytes {
                at: self.pos,
                count: self.buf.len() - self.pos,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    /// Builds an info reply field by field, as a server would.
    struct Packet(Vec<u8>);

    impl Packet {
        fn info() -> Self {
            Packet(vec![0xff, 0xff, 0xff, 0xff, b'I'])
        }
        fn byte(mut self, b: u8) -> Self {
            self.0.push(b);
            self
        }
        fn bytes(mut self, b: &[u8]) -> Self {
            self.0.extend_from_slice(b);
            self
        }
        fn string(self, s: &str) -> Self {
            self.bytes(s.as_bytes()).byte(0)
        }
    }

    /// A Left 4 Dead 2 reply up to and including the version string.
    fn l4d2_core(app_id: u16) -> Packet {
        Packet::info()
            .byte(17)
            .string("left4me vs1")
            .string("c2m1_highway")
            .string("left4dead2")
            .string("Left 4 Dead 2")
            .bytes(&app_id.to_le_bytes())
            .byte(3)
            .byte(8)
            .byte(1)
            .byte(b'd')
            .byte(b'l')
            .byte(0)
            .byte(1)
            .string("2.2.4.3")
    }

    fn l4d2_full() -> Vec<u8> {
        l4d2_core(550)
            .byte(0x80 | 0x10 | 0x40 | 0x20 | 0x01)
            .bytes(&27015u16.to_le_bytes())
            .bytes(&[1, 2, 3, 4, 5, 6, 7, 8])
            .bytes(&27020u16.to_le_bytes())
            .string("tv")
            .string("coop,empty")
            .bytes(&550u64.to_le_bytes())
            .0
    }

    #[test]
    fn request_without_and_with_challenge() {
        let plain = request(None);
        assert_eq!(&plain[..5], b"\xff\xff\xff\xffT");
        assert_eq!(&plain[5..], b"Source Engine Query\0");
        let with = request(Some([1, 2, 3, 4]));
        assert_eq!(with.len(), plain.len() + 4);
        assert_eq!(&with[..plain.len()], &plain[..]);
        assert_eq!(&with[plain.len()..], &[1, 2, 3, 4]);
    }

    #[test]
    fn parses_a_challenge() {
        let reply = parse_reply(b"\xff\xff\xff\xffA\x0a\x0b\x0c\x0d").unwrap();
        assert_eq!(reply, Reply::Challenge([0x0a, 0x0b, 0x0c, 0x0d]));
    }

    #[test]
    fn parses_a_full_info_reply() {
        let Reply::Info(info) = parse_reply(&l4d2_full()).unwrap() else {
            panic!("not info")
        };
        assert_eq!(info.name, "left4me vs1");
        assert_eq!(info.map, "c2m1_highway");
        assert_eq!(info.folder, "left4dead2");
        assert_eq!(info.game, "Left 4 Dead 2");
        assert_eq!(info.app_id, 550);
        assert_eq!((info.players, info.max_players, info.bots), (3, 8, 1));
        assert_eq!((info.server_type, info.environment), ('d', 'l'));
        assert!(!info.password);
        assert!(info.vac);
        assert_eq!(info.version, "2.2.4.3");
        assert_eq!(info.port, Some(27015));
    }

    #[test]
    fn extra_data_is_optional() {
        let Reply::Info(info) = parse_reply(&l4d2_core(550).0).unwrap() else {
            panic!("not info")
        };
        assert_eq!(info.port, None);
        assert_eq!(info.version, "2.2.4.3");
    }

    #[test]
    fn the_ship_has_three_more_bytes() {
        let Reply::Info(info) = parse_reply(
            &Packet::info()
                .byte(7)
                .string("ship")
                .string("batavier")
                .string("ship")
                .string("The Ship")
                .bytes(&THE_SHIP.to_le_bytes())
                .bytes(&[1, 2, 0, b'd', b'w', 0, 0])
                .bytes(&[0, 4, 3])
                .string("1.0")
                .0,
        )
        .unwrap() else {
            panic!("not info")
        };
        assert_eq!(info.map, "batavier");
        assert_eq!(info.version, "1.0");
    }

    #[test]
    fn names_need_not_be_utf8() {
        let packet = Packet::info()
            .byte(17)
            .bytes(b"caf\xe9\0")
            .string("m")
            .string("f")
            .string("g")
            .bytes(&[0x26, 0x02, 0, 8, 0, b'd', b'l', 0, 0])
            .string("v")
            .0;
        let Reply::Info(info) = parse_reply(&packet).unwrap() else {
            panic!("not info")
        };
        assert_eq!(info.name, "caf\u{fffd}");
    }

    /// Every proper prefix of a valid reply is an error naming the field it
    /// ended in, never a panic or a half-filled Info; cutting inside the
    /// extra data must not be taken for a reply without extra data.
    #[test]
    fn every_truncation_is_an_error() {
        let full = l4d2_full();
        for len in 0..full.len() {
            match parse_reply(&full[..len]) {
                Err(ParseError::Truncated { field, at }) => {
                    assert_eq!(at, len);
                    assert!(!field.is_empty());
                }
                // A cut right after the version is a complete reply without
                // the optional extra data.
                Ok(Reply::Info(info)) => {
                    assert_eq!(len, l4d2_core(550).0.len(), "prefix of {len} bytes parsed");
                    assert_eq!(info.port, None);
                }
                other => panic!("prefix of {len} bytes: {other:?}"),
            }
        }
        let challenge = b"\xff\xff\xff\xffA\x01\x02\x03\x04";
        for len in 0..challenge.len() {
            assert!(
                matches!(
                    parse_reply(&challenge[..len]),
                    Err(ParseError::Truncated { .. })
                ),
                "challenge prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn garbage_is_rejected_with_a_reason() {
        assert_eq!(
            parse_reply(b"HTTP/1.1 400 Bad Request\r\n"),
            Err(ParseError::BadHeader(*b"HTTP"))
        );
        assert_eq!(
            parse_reply(b"\xfe\xff\xff\xff\x01\x00\x00\x00\x02\x00"),
            Err(ParseError::Split)
        );
        assert_eq!(
            parse_reply(b"\xff\xff\xff\xffD\x00"),
            Err(ParseError::UnexpectedType(b'D'))
        );
        assert!(
            parse_reply(b"\xff\xff\xff\xffmold")
                .unwrap_err()
                .to_string()
                .contains("GoldSource")
        );
        assert_eq!(
            parse_reply(b"\xff\xff\xff\xffA\x01\x02\x03\x04\x05"),
            Err(ParseError::TrailingBytes { at: 9, count: 1 })
        );
        let mut extra = l4d2_full();
        extra.push(0);
        assert!(matches!(
            parse_reply(&extra),
            Err(ParseError::TrailingBytes { count: 1, .. })
        ));
        // A string that never ends.
        let unterminated = Packet::info().byte(17).bytes(b"no end").0;
        assert_eq!(
            parse_reply(&unterminated),
            Err(ParseError::Truncated {
                field: "the server name",
                at: unterminated.len()
            })
        );
    }

    fn local(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    /// The health check asks its own port: an answer naming another game
    /// port is another server's, one without a port is taken at its word.
    #[test]
    fn the_local_query_wants_its_own_port_in_the_answer() {
        let (port, handle) = server(|_, _| Some(l4d2_full()), 1);
        let err = query_local(port, Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.to_string(), "answered by a server on port 27015");
        handle.join().unwrap();
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = socket.local_addr().unwrap().port();
        let handle = thread::spawn(move || {
            let mut buf = [0u8; 2048];
            for reply in [
                l4d2_core(550).byte(0x80).bytes(&port.to_le_bytes()).0,
                l4d2_core(550).0,
            ] {
                let (_, peer) = socket.recv_from(&mut buf).unwrap();
                socket.send_to(&reply, peer).unwrap();
            }
        });
        assert_eq!(
            query_local(port, Duration::from_secs(5)).unwrap().info.port,
            Some(port)
        );
        assert_eq!(
            query_local(port, Duration::from_secs(5)).unwrap().info.port,
            None
        );
        handle.join().unwrap();
    }

    /// A scripted server on a loopback port: answers each received query with
    /// what `script` returns (None: stay silent) and hands the queries back.
    fn server(
        script: impl Fn(usize, &[u8]) -> Option<Vec<u8>> + Send + 'static,
        queries: usize,
    ) -> (u16, thread::JoinHandle<Vec<Vec<u8>>>) {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = socket.local_addr().unwrap().port();
        let handle = thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 2048];
            for i in 0..queries {
                let (n, peer) = socket.recv_from(&mut buf).unwrap();
                seen.push(buf[..n].to_vec());
                if let Some(reply) = script(i, &buf[..n]) {
                    socket.send_to(&reply, peer).unwrap();
                }
            }
            seen
        });
        (port, handle)
    }

    #[test]
    fn answers_the_challenge_then_gets_the_info() {
        let (port, handle) = server(
            |i, _| {
                Some(if i == 0 {
                    b"\xff\xff\xff\xffA\x11\x22\x33\x44".to_vec()
                } else {
                    l4d2_full()
                })
            },
            2,
        );
        let answer = query(local(port), Duration::from_secs(5)).unwrap();
        assert_eq!(answer.info.map, "c2m1_highway");
        let seen = handle.join().unwrap();
        assert_eq!(seen[0], request(None));
        assert_eq!(seen[1], request(Some([0x11, 0x22, 0x33, 0x44])));
    }

    #[test]
    fn a_server_without_challenge_answers_at_once() {
        let (port, handle) = server(|_, _| Some(l4d2_full()), 1);
        let answer = query(local(port), Duration::from_secs(5)).unwrap();
        assert_eq!(answer.info.players, 3);
        assert!(answer.latency < Duration::from_secs(5));
        handle.join().unwrap();
    }

    #[test]
    fn silence_is_a_timeout_after_the_timeout() {
        let (port, handle) = server(|_, _| None, 1);
        let start = Instant::now();
        let err = query(local(port), Duration::from_millis(300)).unwrap_err();
        let took = start.elapsed();
        assert!(matches!(err, QueryError::Timeout(_)), "{err:?}");
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        handle.join().unwrap();
    }

    #[test]
    fn a_slow_answer_within_the_timeout_counts() {
        let (port, handle) = server(
            |_, _| {
                thread::sleep(Duration::from_millis(200));
                Some(l4d2_full())
            },
            1,
        );
        let answer = query(local(port), Duration::from_secs(2)).unwrap();
        assert!(answer.latency >= Duration::from_millis(200));
        handle.join().unwrap();
    }

    #[test]
    fn garbage_from_the_server_is_malformed() {
        let (port, handle) = server(|_, _| Some(b"\xff\xff\xff\xffI\x11trunc".to_vec()), 1);
        let err = query(local(port), Duration::from_secs(2)).unwrap_err();
        assert!(
            matches!(err, QueryError::Malformed(ParseError::Truncated { .. })),
            "{err:?}"
        );
        handle.join().unwrap();
    }

    #[test]
    fn endless_challenges_give_up() {
        let (port, handle) = server(
            |i, _| Some([&b"\xff\xff\xff\xffA"[..], &[i as u8; 4]].concat()),
            MAX_CHALLENGES + 1,
        );
        let err = query(local(port), Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, QueryError::ChallengeLoop), "{err:?}");
        handle.join().unwrap();
    }

    #[test]
    fn a_closed_port_is_refused() {
        // Bind and drop to find a port nobody listens on.
        let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = query(local(port), Duration::from_secs(2)).unwrap_err();
        assert!(matches!(err, QueryError::Refused), "{err:?}");
    }
}
