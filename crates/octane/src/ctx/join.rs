//! Running several activities at once.

use futures::future::BoxFuture;
use futures::FutureExt;

use super::WorkflowCtx;
use crate::activity::Activity;
use crate::error::Error;

/// A tuple of activities that [`WorkflowCtx::join`] runs concurrently.
///
/// Each activity takes its own location, in tuple order, before any of
/// them starts: locations do not depend on which finishes first.
pub trait Join: Send {
    /// The tuple of outputs.
    type Output;

    /// Plans the steps in order, then runs them concurrently.
    fn run(self, ctx: &mut WorkflowCtx) -> BoxFuture<'_, Result<Self::Output, Error>>;
}

macro_rules! impl_join {
    ($($a:ident $v:ident),+) => {
        impl<$($a: Activity),+> Join for ($($a,)+) {
            type Output = ($($a::Output,)+);

            fn run(self, ctx: &mut WorkflowCtx) -> BoxFuture<'_, Result<Self::Output, Error>> {
                let ($($v,)+) = self;
                let plans = (|| -> Result<_, Error> { Ok(($(ctx.plan_activity($v)?,)+)) })();
                async move {
                    let ($($v,)+) = plans?;
                    let ($($v,)+) = futures::join!($($v.execute()),+);
                    Ok(($($v?,)+))
                }
                .boxed()
            }
        }
    };
}

impl_join!(A a);
impl_join!(A a, B b);
impl_join!(A a, B b, C c);
impl_join!(A a, B b, C c, D d);
impl_join!(A a, B b, C c, D d, E e);

impl WorkflowCtx {
    /// Runs a tuple of activities concurrently and returns their outputs.
    ///
    /// ```no_run
    /// # use octane::prelude::*;
    /// # #[derive(Serialize, Deserialize)] struct Price(u32);
    /// # impl Activity for Price { const NAME: &'static str = "price"; type Output = u32;
    /// #   async fn run(&self, _: &ActivityCtx) -> Result<u32> { Ok(self.0) } }
    /// # async fn f(ctx: &mut WorkflowCtx) -> Result<()> {
    /// let (a, b) = ctx.join((Price(1), Price(2))).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The first error among the activities (all of them run to the end).
    pub async fn join<J: Join>(&mut self, steps: J) -> Result<J::Output, Error> {
        steps.run(self).await
    }
}
