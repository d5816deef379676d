//! Delivery to the next hop: the SMTP client, next-hop resolution (MX or
//! smarthost), outbound TLS policy, and one delivery run per destination.

pub mod client;
pub mod deliver;
pub mod route;
pub mod tls;
