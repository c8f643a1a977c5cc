//! Conversions between the generated wire types ([`crate::pb`]) and the checked
//! domain types. Inbound conversions validate and collect every violation with
//! its field path; outbound conversions are total.

pub mod assessment;
pub mod declaration;
pub mod inspection;
pub mod raw;

pub use assessment::assessment_to_pb;
pub use declaration::declaration_from_pb;
pub use inspection::training_example_from_pb;
