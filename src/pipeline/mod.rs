//! The table pipeline (target-design §8): source → sorter → sink per table.
//!
//! - [`table`]: one table's task; [`sorter`]: its memory-bounded sorter.
//! - [`executor`]: where pipelines run: a data-plane runtime apart from the control plane,
//!   every pull on its bounded blocking pool.
//!
//! The supervisor that starts and stops pipelines on the processor's commands is
//! `processor::runtime::supervise`.

pub mod executor;
pub mod metrics;
pub mod sorter;
pub mod table;
