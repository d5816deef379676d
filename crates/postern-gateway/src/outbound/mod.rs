//! Delivery to the next hop: the SMTP client, next-hop resolution (MX or
//! smarthost) and outbound TLS policy.

pub mod client;
