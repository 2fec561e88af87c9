//! Signals: durable messages to one workflow, consumed exactly once, in
//! send order.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A durable message to a workflow.
///
/// ```
/// use octane::prelude::*;
///
/// #[derive(Serialize, Deserialize, Signal)]
/// struct Deposit { cents: u64 }
/// assert_eq!(Deposit::NAME, "deposit");
///
/// #[derive(Serialize, Deserialize, Signal)]
/// #[signal(name = "account.close")]
/// struct Close;
/// assert_eq!(Close::NAME, "account.close");
/// ```
pub trait Signal: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The name signals of this type are stored and listened for under.
    const NAME: &'static str;
}

/// What `ctx.listen` can wait for: one [`Signal`] type, or an enum of
/// several made with [`join_signal!`](crate::join_signal).
pub trait Listen: Sized + Send + 'static {
    /// The signal names listened for.
    fn names() -> Vec<&'static str>;

    /// Decodes a received signal of one of [`Listen::names`].
    ///
    /// # Errors
    /// When the body does not deserialize into the signal's type.
    fn decode(name: &str, body: &str) -> Result<Self, serde_json::Error>;
}

impl<S: Signal> Listen for S {
    fn names() -> Vec<&'static str> {
        vec![S::NAME]
    }

    fn decode(_name: &str, body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }
}

/// Declares an enum that listens for any of several signal types at once.
///
/// ```
/// use octane::prelude::*;
///
/// #[derive(Serialize, Deserialize)]
/// struct Deposit { cents: u64 }
/// impl Signal for Deposit { const NAME: &'static str = "deposit"; }
///
/// #[derive(Serialize, Deserialize)]
/// struct Close;
/// impl Signal for Close { const NAME: &'static str = "close"; }
///
/// octane::join_signal!(pub enum AccountCommand { Deposit(Deposit), Close(Close) });
///
/// # async fn f(ctx: &mut WorkflowCtx) -> Result<()> {
/// match ctx.listen::<AccountCommand>().await? {
///     AccountCommand::Deposit(d) => { /* … */ }
///     AccountCommand::Close(_) => { /* … */ }
/// }
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! join_signal {
    ($vis:vis enum $name:ident { $($variant:ident($signal:ty)),+ $(,)? }) => {
        /// One of several signals, as received by `ctx.listen`.
        $vis enum $name {
            $(
                #[allow(missing_docs)]
                $variant($signal),
            )+
        }

        impl $crate::Listen for $name {
            fn names() -> ::std::vec::Vec<&'static str> {
                ::std::vec![$(<$signal as $crate::Signal>::NAME),+]
            }

            fn decode(name: &str, body: &str) -> ::std::result::Result<Self, $crate::__private::serde_json::Error> {
                $(
                    if name == <$signal as $crate::Signal>::NAME {
                        return $crate::__private::serde_json::from_str(body).map($name::$variant);
                    }
                )+
                ::std::result::Result::Err(<$crate::__private::serde_json::Error as $crate::__private::serde::de::Error>::custom(
                    ::std::format!("unexpected signal `{name}`"),
                ))
            }
        }
    };
}
