//! The crate's one error type. Every public function that takes shapes or parameters from a user
//! returns [`Result`]; the message names the numbers involved and the rule they broke.

/// What went wrong, with the numbers that show it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A hyper-parameter is outside its allowed range (stride 0, dilation 0, padding too large, …).
    #[error("invalid {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name as the API spells it (`stride`, `padding`, …).
        name: &'static str,
        /// The value given and the rule it broke.
        reason: String,
    },
    /// Tensors whose shapes do not fit together (channels, groups, bias length, rank).
    #[error("{op}: {reason}")]
    ShapeMismatch {
        /// The operation that was called.
        op: &'static str,
        /// The shapes given and the shapes expected.
        reason: String,
    },
    /// The (dilated) kernel is longer than the (padded) input it must slide over.
    #[error(
        "kernel of size {kernel} with dilation {dilation} spans {span} elements, \
         but the padded input has only {padded}"
    )]
    KernelTooLarge {
        /// Kernel size along the axis.
        kernel: usize,
        /// Dilation along the axis.
        dilation: usize,
        /// `dilation·(kernel − 1) + 1`, the elements one window covers.
        span: usize,
        /// Input length plus the padding on both sides.
        padded: usize,
    },
    /// An input that must hold at least one element is empty.
    #[error("{op}: {what} must not be empty")]
    EmptyInput {
        /// The operation that was called.
        op: &'static str,
        /// Which argument was empty.
        what: &'static str,
    },
    /// A file that is missing, unreadable, truncated, corrupt, or whose contents do not hold what
    /// they claim (a data set, a checkpoint, a history).
    #[error("{path}: {reason}")]
    File {
        /// The file's path as given.
        path: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// A figure could not be drawn or encoded.
    #[error("figure: {0}")]
    Plot(String),
    /// The body of an exercise that the student has not written yet; the checker reports it as
    /// "not done yet".
    #[error("not implemented yet")]
    NotImplemented,
}

/// `Result` with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A hyper-parameter `name` outside its range, with the rule it broke.
    pub fn param(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name,
            reason: reason.into(),
        }
    }

    /// A problem with the file at `path`.
    pub fn file(path: impl AsRef<std::path::Path>, reason: impl Into<String>) -> Self {
        Error::File {
            path: path.as_ref().display().to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn shape(op: &'static str, reason: impl Into<String>) -> Self {
        Error::ShapeMismatch {
            op,
            reason: reason.into(),
        }
    }
}
