//! The IPVS generic-netlink message: a command and its top-level attributes.

use netlink_packet_core::{
    emit_u32, parse_u32, DecodeError, DefaultNla, Emitable, ErrorContext, Nla, NlaBuffer,
    NlasIterator, Parseable, ParseableParametrized, NLA_F_NESTED,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

use super::destination::DestAttr;
use super::service::ServiceAttr;
use super::{emit_nested, nested_len, parse_nested};

/// `IPVS_GENL_NAME`.
pub const IPVS_GENL_NAME: &str = "IPVS";
/// `IPVS_GENL_VERSION`.
pub const IPVS_GENL_VERSION: u8 = 1;

/// `IPVS_CMD_ATTR_SERVICE`.
pub const IPVS_CMD_ATTR_SERVICE: u16 = 1;
/// `IPVS_CMD_ATTR_DEST`.
pub const IPVS_CMD_ATTR_DEST: u16 = 2;
/// `IPVS_CMD_ATTR_DAEMON`.
pub const IPVS_CMD_ATTR_DAEMON: u16 = 3;
/// `IPVS_CMD_ATTR_TIMEOUT_TCP`.
pub const IPVS_CMD_ATTR_TIMEOUT_TCP: u16 = 4;
/// `IPVS_CMD_ATTR_TIMEOUT_TCP_FIN`.
pub const IPVS_CMD_ATTR_TIMEOUT_TCP_FIN: u16 = 5;
/// `IPVS_CMD_ATTR_TIMEOUT_UDP`.
pub const IPVS_CMD_ATTR_TIMEOUT_UDP: u16 = 6;
/// `IPVS_INFO_ATTR_VERSION` (top level of `IPVS_CMD_SET_INFO` replies).
pub const IPVS_INFO_ATTR_VERSION: u16 = 1;
/// `IPVS_INFO_ATTR_CONN_TAB_SIZE` (top level of `IPVS_CMD_SET_INFO` replies).
pub const IPVS_INFO_ATTR_CONN_TAB_SIZE: u16 = 2;

macro_rules! commands {
    ($($(#[$doc:meta])* $variant:ident = $value:literal,)*) => {
        /// An `IPVS_CMD_*` command.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum IpvsCommand {
            $($(#[$doc])* $variant,)*
            /// A command this crate does not know.
            Other(u8),
        }

        impl From<IpvsCommand> for u8 {
            fn from(cmd: IpvsCommand) -> u8 {
                match cmd {
                    $(IpvsCommand::$variant => $value,)*
                    IpvsCommand::Other(n) => n,
                }
            }
        }

        impl From<u8> for IpvsCommand {
            fn from(n: u8) -> IpvsCommand {
                match n {
                    $($value => IpvsCommand::$variant,)*
                    n => IpvsCommand::Other(n),
                }
            }
        }
    };
}

commands! {
    /// `IPVS_CMD_NEW_SERVICE`: add a service; also the command of service dump replies.
    NewService = 1,
    /// `IPVS_CMD_SET_SERVICE`.
    SetService = 2,
    /// `IPVS_CMD_DEL_SERVICE`.
    DelService = 3,
    /// `IPVS_CMD_GET_SERVICE`: get one service, or dump them all.
    GetService = 4,
    /// `IPVS_CMD_NEW_DEST`: add a destination; also the command of destination dump replies.
    NewDest = 5,
    /// `IPVS_CMD_SET_DEST`.
    SetDest = 6,
    /// `IPVS_CMD_DEL_DEST`.
    DelDest = 7,
    /// `IPVS_CMD_GET_DEST`: dump the destinations of one service.
    GetDest = 8,
    /// `IPVS_CMD_NEW_DAEMON`.
    NewDaemon = 9,
    /// `IPVS_CMD_DEL_DAEMON`.
    DelDaemon = 10,
    /// `IPVS_CMD_GET_DAEMON`.
    GetDaemon = 11,
    /// `IPVS_CMD_SET_CONFIG`: set timeouts; also the command of `GET_CONFIG` replies.
    SetConfig = 12,
    /// `IPVS_CMD_GET_CONFIG`.
    GetConfig = 13,
    /// `IPVS_CMD_SET_INFO`: only the command of `GET_INFO` replies.
    SetInfo = 14,
    /// `IPVS_CMD_GET_INFO`.
    GetInfo = 15,
    /// `IPVS_CMD_ZERO`.
    Zero = 16,
    /// `IPVS_CMD_FLUSH`.
    Flush = 17,
}

impl IpvsCommand {
    /// Whether the top-level attributes are `IPVS_INFO_ATTR_*` rather than
    /// `IPVS_CMD_ATTR_*`: the two enums reuse the same numbers.
    fn carries_info(self) -> bool {
        matches!(self, IpvsCommand::SetInfo | IpvsCommand::GetInfo)
    }
}

/// A top-level attribute of an IPVS message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpvsAttr {
    /// `IPVS_CMD_ATTR_SERVICE`.
    Service(Vec<ServiceAttr>),
    /// `IPVS_CMD_ATTR_DEST`.
    Dest(Vec<DestAttr>),
    /// `IPVS_CMD_ATTR_DAEMON`, kept raw: kube-ipvs runs no sync daemon.
    Daemon(Vec<DefaultNla>),
    /// `IPVS_CMD_ATTR_TIMEOUT_TCP` in seconds.
    TimeoutTcp(u32),
    /// `IPVS_CMD_ATTR_TIMEOUT_TCP_FIN` in seconds.
    TimeoutTcpFin(u32),
    /// `IPVS_CMD_ATTR_TIMEOUT_UDP` in seconds.
    TimeoutUdp(u32),
    /// `IPVS_INFO_ATTR_VERSION`: `IP_VS_VERSION_CODE`, e.g. 0x010201 for 1.2.1.
    Version(u32),
    /// `IPVS_INFO_ATTR_CONN_TAB_SIZE`: size of the connection hash table.
    ConnTabSize(u32),
    /// Anything else.
    Other(DefaultNla),
}

impl Nla for IpvsAttr {
    fn value_len(&self) -> usize {
        match self {
            IpvsAttr::Service(a) => nested_len(a),
            IpvsAttr::Dest(a) => nested_len(a),
            IpvsAttr::Daemon(a) => nested_len(a),
            IpvsAttr::TimeoutTcp(_)
            | IpvsAttr::TimeoutTcpFin(_)
            | IpvsAttr::TimeoutUdp(_)
            | IpvsAttr::Version(_)
            | IpvsAttr::ConnTabSize(_) => 4,
            IpvsAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            IpvsAttr::Service(_) => IPVS_CMD_ATTR_SERVICE | NLA_F_NESTED,
            IpvsAttr::Dest(_) => IPVS_CMD_ATTR_DEST | NLA_F_NESTED,
            IpvsAttr::Daemon(_) => IPVS_CMD_ATTR_DAEMON | NLA_F_NESTED,
            IpvsAttr::TimeoutTcp(_) => IPVS_CMD_ATTR_TIMEOUT_TCP,
            IpvsAttr::TimeoutTcpFin(_) => IPVS_CMD_ATTR_TIMEOUT_TCP_FIN,
            IpvsAttr::TimeoutUdp(_) => IPVS_CMD_ATTR_TIMEOUT_UDP,
            IpvsAttr::Version(_) => IPVS_INFO_ATTR_VERSION,
            IpvsAttr::ConnTabSize(_) => IPVS_INFO_ATTR_CONN_TAB_SIZE,
            IpvsAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            IpvsAttr::Service(a) => emit_nested(buffer, a),
            IpvsAttr::Dest(a) => emit_nested(buffer, a),
            IpvsAttr::Daemon(a) => emit_nested(buffer, a),
            IpvsAttr::TimeoutTcp(v)
            | IpvsAttr::TimeoutTcpFin(v)
            | IpvsAttr::TimeoutUdp(v)
            | IpvsAttr::Version(v)
            | IpvsAttr::ConnTabSize(v) => {
                // The buffer is exactly 4 bytes long.
                let _ = emit_u32(buffer, *v);
            }
            IpvsAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> ParseableParametrized<NlaBuffer<&'a T>, IpvsCommand>
    for IpvsAttr
{
    fn parse_with_param(buf: &NlaBuffer<&'a T>, cmd: IpvsCommand) -> Result<Self, DecodeError> {
        let v = buf.value();
        let kind = buf.kind();
        let parse = || -> Result<Self, DecodeError> {
            Ok(match (cmd.carries_info(), kind) {
                (true, IPVS_INFO_ATTR_VERSION) => IpvsAttr::Version(parse_u32(v)?),
                (true, IPVS_INFO_ATTR_CONN_TAB_SIZE) => IpvsAttr::ConnTabSize(parse_u32(v)?),
                (true, _) => IpvsAttr::Other(DefaultNla::parse(buf)?),
                (false, IPVS_CMD_ATTR_SERVICE) => IpvsAttr::Service(parse_nested(v)?),
                (false, IPVS_CMD_ATTR_DEST) => IpvsAttr::Dest(parse_nested(v)?),
                (false, IPVS_CMD_ATTR_DAEMON) => IpvsAttr::Daemon(parse_nested(v)?),
                (false, IPVS_CMD_ATTR_TIMEOUT_TCP) => IpvsAttr::TimeoutTcp(parse_u32(v)?),
                (false, IPVS_CMD_ATTR_TIMEOUT_TCP_FIN) => IpvsAttr::TimeoutTcpFin(parse_u32(v)?),
                (false, IPVS_CMD_ATTR_TIMEOUT_UDP) => IpvsAttr::TimeoutUdp(parse_u32(v)?),
                (false, _) => IpvsAttr::Other(DefaultNla::parse(buf)?),
            })
        };
        parse().with_context(|| format!("IPVS_CMD_ATTR {kind}"))
    }
}

/// The payload of an IPVS generic-netlink message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsMessage {
    /// The command.
    pub cmd: IpvsCommand,
    /// Its attributes, in wire order.
    pub attrs: Vec<IpvsAttr>,
}

impl IpvsMessage {
    /// A message of `cmd` with `attrs`.
    pub fn new(cmd: IpvsCommand, attrs: Vec<IpvsAttr>) -> Self {
        IpvsMessage { cmd, attrs }
    }
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        IPVS_GENL_NAME
    }

    fn command(&self) -> u8 {
        self.cmd.into()
    }

    fn version(&self) -> u8 {
        IPVS_GENL_VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        super::emit_all(buffer, &self.attrs);
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let cmd = IpvsCommand::from(header.cmd);
        let attrs = NlasIterator::new(buf)
            .map(|nla| nla.and_then(|nla| IpvsAttr::parse_with_param(&nla, cmd)))
            .collect::<Result<Vec<_>, _>>()
            .context("failed to parse IPVS message attributes")?;
        Ok(IpvsMessage { cmd, attrs })
    }
}
