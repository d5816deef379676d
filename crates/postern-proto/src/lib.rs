//! The SMTP wire protocol with no I/O (RFC 5321 and the extensions Postern speaks:
//! PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING, STARTTLS, AUTH).
//!
//! Everything here is pure and synchronous: receivers take bytes and say what they found
//! or that they need more. Hostile input (over-long lines, bare CR/LF, NUL, smuggled
//! end-of-data sequences) is handled here, beside the parser, and tested here.
//!
//! - [`line`]: bounded command-line reader (512 octets, bare CR/LF detection).
//! - [`command`]: command parser with typed errors that map to precise replies.
//! - [`address`]: reverse-path / forward-path parsing (RFC 5321 §4.1.2, RFC 6531).
//! - [`data`]: DATA receiver: dot-unstuffing, end of data only at CRLF.CRLF.
//! - [`content`]: message content checks shared by DATA and BDAT (line length, bare
//!   CR/LF, NUL), with optional normalization.
//! - [`stuffing`]: dot-stuffing for sending.
//! - [`reply`]: replies with enhanced status codes (RFC 3463).
//! - [`response`]: the client side: reading a server's replies into [`Reply`], and the
//!   capabilities of its EHLO reply.

pub mod address;
pub mod command;
pub mod content;
pub mod data;
pub mod line;
pub mod reply;
pub mod response;
pub mod stuffing;

pub use address::{Address, AddressError, Domain, ForwardPath, ReversePath};
pub use command::{BodyType, Command, CommandError, MailParams, RcptParams};
pub use content::{ContentChecker, ContentFault, LineEndings};
pub use data::{DataProgress, DotReceiver};
pub use line::{LineError, LineReader};
pub use reply::{EnhancedCode, Reply};
pub use response::{Capabilities, ReplyError, ReplyParser};
pub use stuffing::DotStuffer;

/// Longest command line, including CRLF (RFC 5321 §4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;
/// Longest text line, including CRLF (RFC 5321 §4.5.3.1.6).
pub const MAX_TEXT_LINE: usize = 1000;
