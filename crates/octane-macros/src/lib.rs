//! Derive macros for Octane: `#[derive(Signal)]` and `#[derive(Message)]`.
//!
//! The name defaults to the type's name in snake case; set it with
//! `#[signal(name = "…")]` or `#[message(name = "…")]`. Use them through
//! `octane` (`use octane::prelude::*;` brings both in).

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, DeriveInput, LitStr};

/// Implements `octane::Signal` for a serializable type.
#[proc_macro_derive(Signal, attributes(signal))]
pub fn derive_signal(input: TokenStream) -> TokenStream {
    derive(input, "signal", quote!(::octane::Signal))
}

/// Implements `octane::Message` for a serializable type.
#[proc_macro_derive(Message, attributes(message))]
pub fn derive_message(input: TokenStream) -> TokenStream {
    derive(input, "message", quote!(::octane::Message))
}

fn derive(input: TokenStream, attr: &str, trait_path: proc_macro2::TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let mut name = snake_case(&input.ident.to_string());
    for a in input.attrs.iter().filter(|a| a.path().is_ident(attr)) {
        let parsed = a.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                name = meta.value()?.parse::<LitStr>()?.value();
                Ok(())
            } else {
                Err(meta.error(format!("unknown `{attr}` option; expected `name = \"…\"`")))
            }
        });
        if let Err(e) = parsed {
            return e.to_compile_error().into();
        }
    }
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        impl #impl_generics #trait_path for #ident #ty_generics #where_clause {
            const NAME: &'static str = #name;
        }
    }
    .into()
}

fn snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
