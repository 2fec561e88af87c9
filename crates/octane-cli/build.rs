// The CLI's tests run on both stores with the library's test support, under
// the same switches as the library's own tests.
include!("../octane/build.rs");
