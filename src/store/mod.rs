//! What berth records on disk besides the spec files: allocations, layout, atomic writes.

pub mod alloc;
pub mod atomic;
pub mod domain_book;
pub mod identity;
pub mod layout;
pub mod private;
pub mod sleep;

pub use alloc::{AllocError, Allocation, Allocations};
pub use layout::Layout;
