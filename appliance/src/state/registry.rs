//! The views every appliance opens, in a fixed order. A shared one-line list: each concern adds
//! its view here (`Arc::new(crate::grants::GrantsView)`), and changing the list rebuilds the
//! state on the next open.

use std::sync::Arc;

use super::View;

/// The appliance's views besides the built-in audit index.
pub fn appliance_views() -> Vec<Arc<dyn View>> {
    vec![
        Arc::new(crate::grants::view::GrantsView),
        Arc::new(crate::inspect::inventory_view::InventoryView),
    ]
}
