//! The checked domain model: H7 declarations, inspection results, codes,
//! money and reference tables. Pure data and rules; no I/O, no wire types.

pub mod codes;
pub mod declaration;
pub mod inspection;
pub mod money;
pub mod nomenclature;
pub mod regime;
pub mod validation;

pub use codes::{CountryCode, Currency, Hs6};
pub use declaration::{
    Address, Attributes, CarrierChannel, DataFlag, DatasetType, Declaration, EnsHouseConsignment,
    GoodsItem, Party, Text, TransportDocument, TransportDocumentKind,
};
pub use inspection::{
    Channel, FraudKind, GroundTruth, InspectionOutcome, InspectionResult, ItemFinding, ItemTruth,
    SelectionReason, TrainingExample,
};
pub use money::{Money, RateTable};
pub use nomenclature::Nomenclature;
pub use validation::{FieldViolation, Limits, ReferenceData, ValidationError};
