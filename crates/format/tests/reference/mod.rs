//! The generic decoding paths (`cbor::decode` into values, then the fields one by one) of the
//! objects whose decoders read their bytes in one pass: the references those are tested against.

pub mod index;
pub mod tree;
