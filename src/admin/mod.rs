//! The admin interface: the protocol (shared with `wsgate ctl` and the
//! console), the views it shows, the service that runs commands, and the
//! unix socket that carries them.

pub mod ctl;
pub mod protocol;
pub mod service;
pub mod socket;
pub mod view;
