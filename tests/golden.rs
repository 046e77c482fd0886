//! Golden files: what the examples render to, reviewed like code.
//! Regenerate with `UPDATE_GOLDEN=1 cargo test --test golden` and read the diff.

use std::path::PathBuf;

use flotilla::render::{preview, to_yaml};

fn render_dir(dir: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let m = flotilla::manifest::load(&[root.join(dir)], None).unwrap_or_else(|e| panic!("{dir} loads: {e:?}"));
    let world = m.world();
    let mut values = Vec::new();
    for ms in &m.microservices {
        values.extend(preview(ms, &world).expect("example is valid"));
    }
    to_yaml(&values).unwrap()
}

fn check(dir: &str, golden: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(golden);
    let actual = render_dir(dir);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let line = expected.lines().zip(actual.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{} differs from what {dir} renders (first difference at line {}):\n  golden: {:?}\n  actual: {:?}\nrun UPDATE_GOLDEN=1 cargo test --test golden and review the diff",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

#[test]
fn shop_example_renders_as_reviewed() {
    check("examples/shop", "shop.yaml");
}
