//! Renders per-instance config files and environment values with minijinja.

use super::Invalid;
use minijinja::{Environment, UndefinedBehavior, Value};

/// An environment that fails on undefined variables (a typo must not render as "") and offers
/// `sh` (POSIX single-quoting) next to minijinja's `tojson` for configs that are shell or JSON.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_filter("sh", |s: String| format!("'{}'", s.replace('\'', r"'\''")));
    env
}

/// Renders `src` with `ctx`; the error names the template line.
pub fn render(env: &Environment<'_>, src: &str, ctx: &Value) -> Result<String, Invalid> {
    env.render_str(src, ctx).map_err(|e| Invalid::render(&e))
}

/// Checks that `src` compiles, without rendering it.
pub fn check_syntax(env: &Environment<'_>, src: &str) -> Result<(), Invalid> {
    env.template_from_str(src)
        .map(|_| ())
        .map_err(|e| Invalid::Render(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_filter_quotes_for_posix_shells() {
        let env = environment();
        let out = render(
            &env,
            "T={{ t|sh }}",
            &minijinja::context! { t => "it's $HOME" },
        )
        .unwrap();
        assert_eq!(out, r"T='it'\''s $HOME'");
    }

    #[test]
    fn an_undefined_variable_is_an_error_not_an_empty_string() {
        let env = environment();
        assert!(render(&env, "{{ nope }}", &minijinja::context! {}).is_err());
    }
}
