//! Inspection results, synthetic ground truth and training examples.

use chrono::{DateTime, Utc};

use super::codes::Hs6;
use super::declaration::Declaration;
use super::money::Money;

/// Why a declaration was selected for control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectionReason {
    NotSelected,
    RiskScore,
    Rule,
    Random,
    Manual,
}

/// ASYCUDA-style lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Green,
    /// Post-clearance audit: an inspection result may report one, but the
    /// service never routes a declaration there (it decides at clearance).
    Blue,
    Yellow,
    Red,
}

impl Channel {
    /// The channels the service routes to, in order of severity.
    pub const ROUTED: [Channel; 3] = [Channel::Green, Channel::Yellow, Channel::Red];

    /// Stable lower-case name for metrics labels and reports.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Green => "green",
            Channel::Blue => "blue",
            Channel::Yellow => "yellow",
            Channel::Red => "red",
        }
    }

    /// Position in [`Channel::ROUTED`]; BLUE, never routed, has none.
    pub fn routed_index(self) -> Option<usize> {
        match self {
            Channel::Green => Some(0),
            Channel::Yellow => Some(1),
            Channel::Red => Some(2),
            Channel::Blue => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InspectionOutcome {
    Compliant,
    NonCompliant,
    Inconclusive,
}

/// The kinds of fraud the service scores and the generator injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FraudKind {
    Undervaluation,
    Misdescription,
    Misclassification,
    SplitConsignment,
    IossMisuse,
    AddressReuse,
}

impl FraudKind {
    pub const ALL: [FraudKind; 6] = [
        FraudKind::Undervaluation,
        FraudKind::Misdescription,
        FraudKind::Misclassification,
        FraudKind::SplitConsignment,
        FraudKind::IossMisuse,
        FraudKind::AddressReuse,
    ];

    /// Stable lower-case name for reports and file columns.
    pub fn name(self) -> &'static str {
        match self {
            FraudKind::Undervaluation => "undervaluation",
            FraudKind::Misdescription => "misdescription",
            FraudKind::Misclassification => "misclassification",
            FraudKind::SplitConsignment => "split_consignment",
            FraudKind::IossMisuse => "ioss_misuse",
            FraudKind::AddressReuse => "address_reuse",
        }
    }
}

/// What the officer found on one goods item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFinding {
    pub goods_item_number: u32,
    pub undervalued: bool,
    pub corrected_intrinsic_value: Option<Money>,
    pub misdescribed: bool,
    pub corrected_description: String,
    pub corrected_hs6: Option<Hs6>,
}

/// The result of one control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectionResult {
    pub declaration_id: String,
    pub inspection_id: String,
    pub selection_reason: SelectionReason,
    pub control_type: Option<Channel>,
    pub outcome: InspectionOutcome,
    /// Sorted and free of duplicates.
    pub fraud_kinds: Vec<FraudKind>,
    /// Sorted by goods item number, at most one per item.
    pub findings: Vec<ItemFinding>,
    pub inspected_at: Option<DateTime<Utc>>,
    pub officer_notes: String,
}

impl InspectionResult {
    pub fn found(&self, kind: FraudKind) -> bool {
        self.fraud_kinds.contains(&kind)
    }
}

/// The truth about one synthetic item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemTruth {
    pub goods_item_number: u32,
    pub hs6: Hs6,
    pub description: String,
    pub intrinsic_value: Money,
}

/// Full ground truth of a synthetic parcel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroundTruth {
    /// Sorted and free of duplicates.
    pub fraud_kinds: Vec<FraudKind>,
    /// Sorted by goods item number.
    pub items: Vec<ItemTruth>,
    pub seller_profile: String,
}

impl GroundTruth {
    pub fn is(&self, kind: FraudKind) -> bool {
        self.fraud_kinds.contains(&kind)
    }
}

/// One line of a training file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingExample {
    pub declaration: Declaration,
    pub result: Option<InspectionResult>,
    pub truth: Option<GroundTruth>,
}
