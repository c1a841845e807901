//! [`DecodeLimits`]: the bounds a connection puts on what one decoded packet may hold, checked
//! by the decoder while it reads, before the work they bound is done.

/// Limits applied by [`super::decode`] to every packet.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Largest total packet size accepted (fixed header included); larger declared sizes fail
    /// with [`super::DecodeError::TooLarge`] before the body is read or buffered.
    pub max_packet_size: u32,
    /// Most User Properties one packet may carry, all its property sections together (CONNECT
    /// and will properties count as one packet); more fail with
    /// [`super::DecodeError::TooManyUserProperties`] (0x97 Quota exceeded) as soon as the first
    /// one over is met.
    pub max_user_properties: usize,
}

impl DecodeLimits {
    /// The default of [`DecodeLimits::max_user_properties`]: 128 a packet. MQTT sets no limit
    /// (a 1 MiB PUBLISH can carry about 200,000 empty pairs); 128 is far more than any client
    /// library or broker feature uses.
    pub const DEFAULT_MAX_USER_PROPERTIES: usize = 128;

    /// `max_packet_size` with the default user-property limit
    /// ([`DecodeLimits::DEFAULT_MAX_USER_PROPERTIES`]).
    #[must_use]
    pub const fn new(max_packet_size: u32) -> DecodeLimits {
        DecodeLimits {
            max_packet_size,
            max_user_properties: Self::DEFAULT_MAX_USER_PROPERTIES,
        }
    }
}
