//! Interface texts in English and Russian, from `templates/i18n/<lang>.txt` (embedded).

use std::collections::HashMap;
use std::sync::OnceLock;

use accounts_api::Lang;

const EN: &str = include_str!("../../../templates/i18n/en.txt");
const RU: &str = include_str!("../../../templates/i18n/ru.txt");

fn parse(src: &'static str) -> HashMap<&'static str, &'static str> {
    src.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(" = ").map(|(k, v)| (k.trim(), v.trim())))
        .collect()
}

fn table(lang: Lang) -> &'static HashMap<&'static str, &'static str> {
    static EN_T: OnceLock<HashMap<&str, &str>> = OnceLock::new();
    static RU_T: OnceLock<HashMap<&str, &str>> = OnceLock::new();
    match lang {
        Lang::En => EN_T.get_or_init(|| parse(EN)),
        Lang::Ru => RU_T.get_or_init(|| parse(RU)),
    }
}

/// The text for `key` in `lang`; English when missing; the key itself as a last resort (a test
/// makes sure that never happens for keys the templates use).
pub fn text(lang: Lang, key: &str) -> &str {
    table(lang)
        .get(key)
        .or_else(|| table(Lang::En).get(key))
        .copied()
        .unwrap_or(key)
}

pub fn has(lang: Lang, key: &str) -> bool {
    table(lang).contains_key(key)
}

pub fn keys(lang: Lang) -> Vec<&'static str> {
    let mut k: Vec<_> = table(lang).keys().copied().collect();
    k.sort();
    k
}

/// The language to show someone who is not signed in: their choice, else their browser's.
pub fn negotiate(chosen: Option<&str>, accept_language: Option<&str>) -> Lang {
    if let Some(lang) = chosen.and_then(Lang::parse) {
        return lang;
    }
    let first = accept_language
        .and_then(|h| h.split(',').next())
        .map(|l| l.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if first.starts_with("ru") {
        Lang::Ru
    } else {
        Lang::En
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_have_the_same_keys() {
        assert_eq!(keys(Lang::En), keys(Lang::Ru));
        assert!(keys(Lang::En).len() > 100);
    }

    #[test]
    fn every_key_the_templates_and_code_use_exists() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut missing = Vec::new();
        let mut files = Vec::new();
        for dir in ["templates", "app/src"] {
            collect(&root.join(dir), &mut files);
        }
        for f in files {
            let src = std::fs::read_to_string(&f).unwrap();
            for part in src.split(".t(\"").skip(1) {
                let key = part.split('"').next().unwrap();
                if key.contains('.') && !key.contains(' ') && !has(Lang::En, key) {
                    missing.push(format!("{}: {key}", f.display()));
                }
            }
        }
        assert!(missing.is_empty(), "missing texts: {missing:#?}");
    }

    fn collect(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                collect(&p, out);
            } else if p.extension().is_some_and(|x| x == "html" || x == "rs") {
                out.push(p);
            }
        }
    }

    #[test]
    fn picks_the_language() {
        assert_eq!(negotiate(Some("ru"), None), Lang::Ru);
        assert_eq!(negotiate(None, Some("ru-RU,ru;q=0.9,en;q=0.8")), Lang::Ru);
        assert_eq!(negotiate(None, Some("de-DE")), Lang::En);
        assert_eq!(text(Lang::Ru, "nav.home"), "Главная");
        assert_eq!(text(Lang::En, "no.such.key"), "no.such.key");
    }
}
