//! Host capabilities a binding may grant: each is one imported WIT interface.

use std::fmt;

/// One host capability. A component that imports the interface of a capability its binding
/// does not grant is refused at load; the host functions check the grant again on every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    Log,
    Clock,
    Counters,
    Cache,
    ResponseCache,
    Limits,
    Config,
    Metrics,
    Embeddings,
    Http,
}

impl Capability {
    pub const ALL: [Capability; 10] = [
        Capability::Log,
        Capability::Clock,
        Capability::Counters,
        Capability::Cache,
        Capability::ResponseCache,
        Capability::Limits,
        Capability::Config,
        Capability::Metrics,
        Capability::Embeddings,
        Capability::Http,
    ];

    /// The name used in config and in the WIT interface (`sluice:policy/<name>@<version>`).
    pub fn name(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Clock => "clock",
            Capability::Counters => "counters",
            Capability::Cache => "cache",
            Capability::ResponseCache => "response-cache",
            Capability::Limits => "limits",
            Capability::Config => "config",
            Capability::Metrics => "metrics",
            Capability::Embeddings => "embeddings",
            Capability::Http => "http",
        }
    }

    /// Whether the host serves it asynchronously (it may wait on the network: `limits` asks
    /// Redis when the gateway has one), which makes the plugins importing it run on a fiber.
    pub fn is_async(self) -> bool {
        matches!(self, Capability::Embeddings | Capability::Http | Capability::Limits)
    }

    pub fn parse(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.name() == name)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The capabilities granted to one binding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities(u16);

impl Capabilities {
    pub fn none() -> Self {
        Capabilities(0)
    }

    pub fn all() -> Self {
        Capability::ALL.into_iter().collect()
    }

    pub fn with(self, c: Capability) -> Self {
        Capabilities(self.0 | c.bit())
    }

    pub fn has(self, c: Capability) -> bool {
        self.0 & c.bit() != 0
    }
}

impl FromIterator<Capability> for Capabilities {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        iter.into_iter().fold(Capabilities::none(), Capabilities::with)
    }
}
