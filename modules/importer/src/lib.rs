//! Moving an account over from amoCRM / Kommo through its API v4.
//!
//! [`amo`] reads an account politely (paced under its rate limit, 429s waited out, pages of 250);
//! [`survey`] is the dry run: it reads everything an import would and reports the counts and
//! what cannot be brought over as it is.

pub mod amo;
pub mod survey;

pub use amo::{AmoClient, AmoError, ClientOptions};
pub use survey::{Problem, Survey, survey};
