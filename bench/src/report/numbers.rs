//! Numbers written for people: significant digits, thousands grouped,
//! ratios.

/// `x` with `sig` significant digits, never in exponent notation.
pub fn fmt_sig(x: f64, sig: i32) -> String {
    if !x.is_finite() {
        return "–".to_string();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (sig - 1 - magnitude).max(0) as usize;
    format!("{x:.decimals$}")
}

/// Up to three significant digits, trailing zeros dropped
/// (`3`, `2.5`, `0.05`).
pub fn fmt_trim(x: f64) -> String {
    let s = fmt_sig(x, 3);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A rate: whole and grouped by thousands from 100 up (`115,234`), else
/// with three significant digits (`9.42`).
pub fn fmt_count(x: f64) -> String {
    if !x.is_finite() || x.abs() < 100.0 {
        return fmt_sig(x, 3);
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

/// `x / of` as `1.23×`, or `–` without a (non-zero) reference.
pub fn ratio(x: f64, of: Option<f64>) -> String {
    match of {
        Some(of) if of > 0.0 && x.is_finite() => format!("{:.2}×", x / of),
        _ => "–".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_formatted_for_people() {
        assert_eq!(fmt_sig(0.012345, 3), "0.0123");
        assert_eq!(fmt_sig(2.5, 3), "2.50");
        assert_eq!(fmt_sig(12345.0, 3), "12345");
        assert_eq!(fmt_sig(f64::NAN, 3), "–");
        assert_eq!(fmt_trim(3.0), "3");
        assert_eq!(fmt_trim(2.5), "2.5");
        assert_eq!(fmt_trim(0.05), "0.05");
        assert_eq!(fmt_trim(5000.0), "5000");
        assert_eq!(fmt_count(115_234.4), "115,234");
        assert_eq!(fmt_count(999.6), "1,000");
        assert_eq!(fmt_count(9.421), "9.42");
        assert_eq!(ratio(3.0, Some(2.0)), "1.50×");
        assert_eq!(ratio(3.0, Some(0.0)), "–");
        assert_eq!(ratio(3.0, None), "–");
    }
}
