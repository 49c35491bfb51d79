//! The ports an instance's server binds, by one rule. srcds binds the game
//! port (`+hostport`: UDP for the game and A2S, TCP for rcon), the client
//! port (`+clientport`, 27005 by default) and, unless `-nohltv`, SourceTV
//! (`+tv_port`, 27020 by default); a port that is taken makes it bind one of
//! the next nine instead (Source SDK 2013, engine/net_ws.cpp, NET_OpenSocket:
//! PORT_TRY_MAX 10, "Socket bound to non-default port"). So every port is
//! explicit here: the client and SourceTV ports default to the game port
//! plus a fixed offset, far enough apart that instances on consecutive game
//! ports never share one; the helper writes all three into the game's
//! environment and the server unit passes them to srcds; a mount is refused
//! while a mounted instance uses any of them ([`Ports::shared_with`]).

use crate::error::{Failure, Kind};

/// Sets the client port; without it, the game port plus [`CLIENT_OFFSET`].
pub(crate) const CLIENT_KEY: &str = "L4D2_CLIENT_PORT";
/// Sets the SourceTV port; without it, the game port plus [`TV_OFFSET`].
pub(crate) const TV_KEY: &str = "L4D2_TV_PORT";
/// 100 and 200: a hundred instances on consecutive game ports share no port.
pub(crate) const CLIENT_OFFSET: u16 = 100;
pub(crate) const TV_OFFSET: u16 = 200;
/// In L4D2_ARGS, turns SourceTV off: its port is then not bound.
pub(crate) const NO_TV_FLAG: &str = "-nohltv";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ports {
    pub(crate) game: u16,
    pub(crate) client: u16,
    pub(crate) tv: u16,
    pub(crate) tv_enabled: bool,
}

/// One port an instance binds, and what for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Use {
    pub(crate) port: u16,
    pub(crate) what: &'static str,
}

impl Ports {
    /// The ports srcds binds: the game port (UDP game and A2S, TCP rcon),
    /// the client port, and SourceTV's unless `-nohltv`.
    pub(crate) fn used(&self) -> Vec<Use> {
        let mut v = vec![
            Use {
                port: self.game,
                what: "game port",
            },
            Use {
                port: self.client,
                what: "client port",
            },
        ];
        if self.tv_enabled {
            v.push(Use {
                port: self.tv,
                what: "SourceTV port",
            });
        }
        v
    }

    /// The first port both use: (this one's use, the other's use).
    pub(crate) fn shared_with(&self, other: &Ports) -> Option<(Use, Use)> {
        let theirs = other.used();
        self.used().into_iter().find_map(|mine| {
            theirs
                .iter()
                .find(|t| t.port == mine.port)
                .map(|t| (mine, *t))
        })
    }

    /// From the game port, the optional explicit client and SourceTV ports
    /// (each with its line, for messages) and L4D2_ARGS.
    pub(crate) fn resolve(
        origin: &str,
        game: u16,
        client: Option<(u16, usize)>,
        tv: Option<(u16, usize)>,
        args: &str,
    ) -> Result<Ports, Failure> {
        let derived = |key: &str, offset: u16| {
            game.checked_add(offset).ok_or_else(|| {
                Failure::new(
                    Kind::InvalidConfig,
                    format!(
                        "{origin}: L4D2_PORT={game} leaves no room for the default {key} (L4D2_PORT + {offset} is past 65535)"
                    ),
                )
                .hint(format!("set {key} to a free port, or use a lower L4D2_PORT"))
            })
        };
        let client = match client {
            Some((p, _)) => p,
            None => derived(CLIENT_KEY, CLIENT_OFFSET)?,
        };
        let tv = match tv {
            Some((p, _)) => p,
            None => derived(TV_KEY, TV_OFFSET)?,
        };
        let ports = Ports {
            game,
            client,
            tv,
            tv_enabled: !args
                .split_ascii_whitespace()
                .any(|w| w.eq_ignore_ascii_case(NO_TV_FLAG)),
        };
        let used = ports.used();
        for (i, a) in used.iter().enumerate() {
            if let Some(b) = used[i + 1..].iter().find(|b| b.port == a.port) {
                return Err(Failure::new(
                    Kind::InvalidConfig,
                    format!(
                        "{origin}: the {} and the {} are both {}; srcds would move one of them to another port",
                        a.what, b.what, a.port
                    ),
                )
                .hint(format!(
                    "give each its own port (L4D2_PORT, {CLIENT_KEY}, {TV_KEY}; by default the game port + {CLIENT_OFFSET} and + {TV_OFFSET})"
                )));
            }
        }
        Ok(ports)
    }

    /// The values the game's environment gets for [`CLIENT_KEY`] and
    /// [`TV_KEY`], whether or not instance.env set them.
    pub(crate) fn resolved_vars(&self) -> [(&'static str, String); 2] {
        [
            (CLIENT_KEY, self.client.to_string()),
            (TV_KEY, self.tv.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(
        game: u16,
        client: Option<u16>,
        tv: Option<u16>,
        args: &str,
    ) -> Result<Ports, Failure> {
        Ports::resolve("f", game, client.map(|p| (p, 2)), tv.map(|p| (p, 3)), args)
    }

    #[test_log::test]
    fn defaults_follow_the_game_port() {
        let p = ports(27015, None, None, "").unwrap();
        assert_eq!(
            (p.game, p.client, p.tv, p.tv_enabled),
            (27015, 27115, 27215, true)
        );
        let p = ports(27015, Some(27005), None, "+map x -NoHLTV").unwrap();
        assert_eq!((p.client, p.tv, p.tv_enabled), (27005, 27215, false));
        assert_eq!(p.used().len(), 2);
    }

    /// A hundred instances on consecutive game ports share nothing.
    #[test_log::test]
    fn consecutive_instances_never_share() {
        let all: Vec<Ports> = (0..100)
            .map(|i| ports(27015 + i, None, None, "").unwrap())
            .collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_eq!(a.shared_with(b), None, "{a:?} {b:?}");
            }
        }
        let next = ports(27115, None, None, "").unwrap();
        let (mine, theirs) = next.shared_with(&all[0]).unwrap();
        assert_eq!(
            (mine.what, theirs.what, mine.port),
            ("game port", "client port", 27115)
        );
    }

    #[test_log::test]
    fn sourcetv_off_frees_its_port() {
        let a = ports(27015, None, None, "").unwrap();
        let b = ports(27015 + TV_OFFSET, None, None, "").unwrap();
        assert!(a.shared_with(&b).is_some());
        let a = ports(27015, None, None, "-nohltv").unwrap();
        assert_eq!(a.shared_with(&b), None);
    }

    #[test_log::test]
    fn refused() {
        let e = ports(65500, None, None, "").unwrap_err();
        assert_eq!(e.kind, Kind::InvalidConfig);
        assert!(
            e.message.contains("default L4D2_CLIENT_PORT"),
            "{}",
            e.message
        );
        assert!(ports(65500, Some(1000), Some(1001), "").is_ok());
        let e = ports(27015, Some(27015), None, "").unwrap_err();
        assert_eq!(
            e.message,
            "f: the game port and the client port are both 27015; srcds would move one of them to another port"
        );
        let e = ports(27015, None, Some(27115), "").unwrap_err();
        assert!(
            e.message.contains("client port and the SourceTV port"),
            "{}",
            e.message
        );
        assert!(ports(27015, None, Some(27115), "-nohltv").is_ok());
    }
}
