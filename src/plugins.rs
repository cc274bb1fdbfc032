//! The built-in plugins, by name. Adding a plugin means adding its crate to
//! the workspace and one line here (see docs/plugins.md).

use wsgate_plugin_api::{AuthPlugin, RouterPlugin};

static AUTH: &[&dyn AuthPlugin] = &[
    &wsgate_auth_token::Plugin,
    &wsgate_auth_jwt::Plugin,
    &wsgate_auth_forward::Plugin,
];

static ROUTERS: &[&dyn RouterPlugin] = &[
    &wsgate_route_echo::Plugin,
    &wsgate_route_pubsub::Plugin,
    &wsgate_route_proxy::Plugin,
    &wsgate_route_callback::Plugin,
];

/// The auth plugin called `name`.
pub fn auth(name: &str) -> Option<&'static dyn AuthPlugin> {
    AUTH.iter().copied().find(|p| p.name() == name)
}

/// The router plugin called `name`.
pub fn router(name: &str) -> Option<&'static dyn RouterPlugin> {
    ROUTERS.iter().copied().find(|p| p.name() == name)
}

/// Every auth plugin.
pub fn auths() -> impl Iterator<Item = &'static dyn AuthPlugin> {
    AUTH.iter().copied()
}

/// Every router plugin.
pub fn routers() -> impl Iterator<Item = &'static dyn RouterPlugin> {
    ROUTERS.iter().copied()
}

pub fn auth_names() -> Vec<&'static str> {
    AUTH.iter().map(|p| p.name()).collect()
}

pub fn router_names() -> Vec<&'static str> {
    ROUTERS.iter().map(|p| p.name()).collect()
}
