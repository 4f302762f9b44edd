//! Reading a child's output with a cap. (Being implemented.)

pub struct CappedOutput;
