//! Scale-out.
