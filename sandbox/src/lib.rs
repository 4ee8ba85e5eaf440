//! PiCloud's executor processes: the zygote, confined workers, the IPC codec
//! and the supervised pool.

pub mod confine;
