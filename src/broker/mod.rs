//! The broker proper, behind [`core::Core`]: routing and fan-out ([`routing`]), the client-id
//! registry and takeover ([`registry`]), the timer wheel of offline sessions ([`timers`]),
//! in-process clients ([`local`]) and the `$SYS` topics ([`sys`]). It knows nothing of sockets:
//! socket connections (`crate::connection`) and in-process clients are its two kinds of client,
//! and both call the same code to publish and subscribe.

pub mod clients;
pub mod core;
pub mod local;
pub mod persist;
pub mod registry;
pub mod routing;
pub mod sys;
pub mod timers;
