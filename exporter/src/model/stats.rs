//! Significance tests of the drivers analysis (SPEC §7.5) and of the
//! impact and timing insights (§7.7, §7.8), the peer benchmark's order
//! statistics (§7.10), and the special functions they need, implemented
//! from the textbook methods (Numerical Recipes, 3rd ed., §6.1–6.4) so the
//! exporter needs no numerics crate:
//!
//! - `ln Γ` by the Lanczos approximation (g = 7, 9 terms; ~1e-15);
//! - the regularized incomplete gamma `Q(a, x)` by series /
//!   continued fraction, giving `erfc` and so the normal distribution;
//! - the regularized incomplete beta `I_x(a, b)` by Lentz's continued
//!   fraction, giving Student's t and the binomial distribution.
//!
//! The tests (`docs/metrics.md` says which measure uses which):
//! [`two_proportion_z`], [`welch_t`] and [`poisson_rates`] (with real
//! exposures: [`poisson_rates_exposed`]). Each returns a two-sided
//! p-value, or `None` when the test is undefined for the data (an empty
//! group, no variance); never NaN. Beside them: [`bonferroni`], type-7
//! quantiles ([`quantile_type7`]) and percentile ranks
//! ([`percentile_rank`]) of the peer benchmark.
//!
//! Pure functions only.

use std::f64::consts::PI;

const EPS: f64 = 1e-15;
const TINY: f64 = 1e-300;
const MAX_ITER: usize = 200_000;

/// `ln Γ(x)` for `x > 0`.
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        return (PI / (PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized upper incomplete gamma function `Q(a, x) = 1 − P(a, x)`
/// for `a > 0`, `x ≥ 0`.
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let gln = ln_gamma(a);
    if x < a + 1.0 {
        // Series for P(a, x).
        let mut ap = a;
        let mut sum = 1.0 / a;
        let mut del = sum;
        for _ in 0..MAX_ITER {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if del.abs() < sum.abs() * EPS {
                break;
            }
        }
        1.0 - sum * (-x + a * x.ln() - gln).exp()
    } else {
        // Continued fraction for Q(a, x) (modified Lentz).
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..MAX_ITER {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < EPS {
                break;
            }
        }
        (-x + a * x.ln() - gln).exp() * h
    }
}

/// The complementary error function `erfc(x)`.
pub fn erfc(x: f64) -> f64 {
    if x >= 0.0 {
        gamma_q(0.5, x * x)
    } else {
        2.0 - gamma_q(0.5, x * x)
    }
}

/// Two-sided p-value of a standard normal statistic: `P(|Z| ≥ |z|)`.
pub fn normal_two_sided(z: f64) -> f64 {
    erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0)
}

/// The regularized incomplete beta function `I_x(a, b)` for `a, b > 0`,
/// `0 ≤ x ≤ 1`.
pub fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    // The continued fraction converges fast for x < (a + 1) / (a + b + 2);
    // otherwise use I_x(a, b) = 1 − I_{1−x}(b, a).
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

/// Lentz's evaluation of the continued fraction of `I_x(a, b)`.
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    let qab = a + b;
    let qap = a + 1.0;
    let qam = a - 1.0;
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..MAX_ITER {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// Two-sided p-value of Student's t statistic with `df` degrees of
/// freedom (any real `df > 0`): `P(|T| ≥ |t|) = I_{df/(df+t²)}(df/2, 1/2)`.
pub fn student_t_two_sided(t: f64, df: f64) -> f64 {
    inc_beta(df / 2.0, 0.5, df / (df + t * t)).clamp(0.0, 1.0)
}

/// `P(X ≤ k)` for `X ~ Binomial(n, p)`.
pub fn binomial_cdf(k: u64, n: u64, p: f64) -> f64 {
    if k >= n {
        1.0
    } else {
        inc_beta((n - k) as f64, k as f64 + 1.0, 1.0 - p)
    }
}

/// `P(X ≥ k)` for `X ~ Binomial(n, p)`.
pub fn binomial_sf_incl(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        1.0
    } else if k > n {
        0.0
    } else {
        inc_beta(k as f64, (n - k + 1) as f64, p)
    }
}

/// Two-proportion z-test of `x1/n1` against `x2/n2` with the pooled
/// proportion; the two-sided p-value. `None` if a group is empty or the
/// pooled proportion is 0 or 1 (no variance). Requires `x ≤ n`.
pub fn two_proportion_z(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<f64> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (x1, n1, x2, n2) = (x1 as f64, n1 as f64, x2 as f64, n2 as f64);
    let p = (x1 + x2) / (n1 + n2);
    let se = (p * (1.0 - p) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se.is_nan() || se <= 0.0 {
        return None;
    }
    Some(normal_two_sided((x1 / n1 - x2 / n2) / se))
}

/// Sample mean and unbiased variance (`n − 1`); `None` for fewer than
/// two values.
pub fn mean_var(xs: &[f64]) -> Option<(f64, f64)> {
    if xs.len() < 2 {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    Some((mean, var))
}

/// Welch's unequal-variances t-test of the means of `a` and `b`, with
/// Welch–Satterthwaite degrees of freedom; the two-sided p-value. `None`
/// if a sample has fewer than two values or both have zero variance.
pub fn welch_t(a: &[f64], b: &[f64]) -> Option<f64> {
    let (m1, v1) = mean_var(a)?;
    let (m2, v2) = mean_var(b)?;
    let (s1, s2) = (v1 / a.len() as f64, v2 / b.len() as f64);
    let se2 = s1 + s2;
    if se2.is_nan() || se2 <= 0.0 {
        return None;
    }
    let t = (m1 - m2) / se2.sqrt();
    let df = se2 * se2 / (s1 * s1 / (a.len() as f64 - 1.0) + s2 * s2 / (b.len() as f64 - 1.0));
    Some(student_t_two_sided(t, df))
}

/// Comparison of two Poisson rates `k1/t1` and `k2/t2` (events per unit of
/// exposure; here views per share) by the exact conditional test: given
/// `n = k1 + k2`, `k1 ~ Binomial(n, t1 / (t1 + t2))` under equal rates.
/// The two-sided p-value doubles the smaller tail (capped at 1). `None` if
/// an exposure is 0 or there are no events at all.
pub fn poisson_rates(k1: u64, t1: u64, k2: u64, t2: u64) -> Option<f64> {
    poisson_rates_exposed(k1, t1 as f64, k2, t2 as f64)
}

/// [`poisson_rates`] with real exposures (e.g. days, fractional for a
/// window cut at now). `None` if an exposure is not positive or there are
/// no events at all.
pub fn poisson_rates_exposed(k1: u64, t1: f64, k2: u64, t2: f64) -> Option<f64> {
    let positive = |t: f64| t.is_finite() && t > 0.0;
    if !positive(t1) || !positive(t2) || k1 + k2 == 0 {
        return None;
    }
    let n = k1 + k2;
    let p = t1 / (t1 + t2);
    let lower = binomial_cdf(k1, n, p);
    let upper = binomial_sf_incl(k1, n, p);
    Some((2.0 * lower.min(upper)).min(1.0))
}

/// Bonferroni's adjustment of a p-value for `tests` comparisons:
/// `min(1, p × tests)`.
pub fn bonferroni(p: f64, tests: usize) -> f64 {
    (p * tests.max(1) as f64).min(1.0)
}

/// The `q` quantile (`0 ≤ q ≤ 1`) of `sorted` (ascending) by linear
/// interpolation between order statistics, Hyndman and Fan's "type 7"
/// (R's and NumPy's default): with `h = (n − 1) q`, `x[⌊h⌋] + (h − ⌊h⌋)
/// (x[⌊h⌋ + 1] − x[⌊h⌋])`. `None` when empty.
pub fn quantile_type7(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    debug_assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "not sorted");
    let h = last as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(last);
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// The percentile rank of `own` among `values` (which include it):
/// `100 × (values below + ½ × values equal) ÷ values` (SciPy's
/// `percentileofscore(kind='mean')`). `None` when `values` is empty.
pub fn percentile_rank(values: &[f64], own: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let below = values.iter().filter(|v| **v < own).count() as f64;
    let equal = values.iter().filter(|v| **v == own).count() as f64;
    Some(100.0 * (below + 0.5 * equal) / values.len() as f64)
}

/// The median of `values` (the mean of the two middle values for an even
/// count); `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values are from SciPy 1.17 (`scipy.special`,
    /// `scipy.stats`), quoted in each assertion's comment.
    fn close(a: f64, b: f64, tol: f64) {
        assert!(
            (a - b).abs() <= tol * b.abs().max(1e-300),
            "{a} vs {b} (rel tol {tol})"
        );
    }

    #[test]
    fn special_functions() {
        // gammaln(0.5) = ln √π, gammaln(10) = ln 9!, gammaln(1e6).
        close(ln_gamma(0.5), 0.572_364_942_924_7, 1e-13);
        close(ln_gamma(10.0), 12.801_827_480_081_469, 1e-14);
        close(ln_gamma(1e6), 12_815_504.569_147_611, 1e-14);
        // erfc(0.5), erfc(3), erfc(-1).
        close(erfc(0.5), 0.479_500_122_186_953_5, 1e-12);
        close(erfc(3.0), 2.209_049_699_858_544_5e-5, 1e-10);
        close(erfc(-1.0), 1.842_700_792_949_714_8, 1e-12);
        // betainc(2, 3, 0.4), betainc(0.5, 0.5, 0.9).
        close(inc_beta(2.0, 3.0, 0.4), 0.524_799_999_999_999_9, 1e-12);
        close(inc_beta(0.5, 0.5, 0.9), 0.795_167_235_300_866_5, 1e-12);
        assert_eq!(inc_beta(2.0, 3.0, 0.0), 0.0);
        assert_eq!(inc_beta(2.0, 3.0, 1.0), 1.0);
    }

    #[test]
    fn distributions() {
        // 2 * norm.sf(1.959963984540054) = 0.05; 2 * norm.sf(4) = 6.334e-5.
        close(normal_two_sided(1.959_963_984_540_054), 0.05, 1e-12);
        close(normal_two_sided(-4.0), 6.334_248_366_623_973e-5, 1e-10);
        assert_eq!(normal_two_sided(0.0), 1.0);
        // 2 * t.sf(2.228138851986274, 10) = 0.05; 2 * t.sf(1.5, 3.7).
        close(
            student_t_two_sided(2.228_138_851_986_274, 10.0),
            0.05,
            1e-10,
        );
        close(
            student_t_two_sided(-1.5, 3.7),
            0.213_598_169_202_013_5,
            1e-10,
        );
        // binom.cdf(3, 10, 0.5), binom.sf(6, 10, 0.5) (= P(X ≥ 7)).
        close(binomial_cdf(3, 10, 0.5), 0.171_875, 1e-12);
        close(binomial_sf_incl(7, 10, 0.5), 0.171_875, 1e-12);
        // binom.cdf(480, 1000, 0.5).
        close(binomial_cdf(480, 1000, 0.5), 0.108_724_146_602_070_75, 1e-9);
        assert_eq!(binomial_cdf(10, 10, 0.3), 1.0);
        assert_eq!(binomial_sf_incl(0, 10, 0.3), 1.0);
    }

    #[test]
    fn two_proportions() {
        // 45/100 vs 30/100: z = 2.1908902300206647, p = 2 * norm.sf(z).
        close(
            two_proportion_z(45, 100, 30, 100).unwrap(),
            0.028_459_736_916_310_55,
            1e-9,
        );
        // Symmetric.
        close(
            two_proportion_z(30, 100, 45, 100).unwrap(),
            0.028_459_736_916_310_55,
            1e-9,
        );
        assert_eq!(two_proportion_z(1, 0, 1, 2), None);
        assert_eq!(two_proportion_z(0, 5, 0, 7), None);
        assert_eq!(two_proportion_z(5, 5, 7, 7), None);
        close(two_proportion_z(3, 6, 3, 6).unwrap(), 1.0, 1e-12);
    }

    #[test]
    fn welch() {
        // ttest_ind([1, 2, 3, 4, 5], [2, 4, 6, 8, 10, 12], equal_var=False).
        let p = welch_t(
            &[1.0, 2.0, 3.0, 4.0, 5.0],
            &[2.0, 4.0, 6.0, 8.0, 10.0, 12.0],
        )
        .unwrap();
        close(p, 0.049_284_338_206_730_53, 1e-9);
        // ttest_ind([50, 60, 70], [40, 45], equal_var=False).
        let p = welch_t(&[50.0, 60.0, 70.0], &[40.0, 45.0]).unwrap();
        close(p, 0.079_820_692_391_280_19, 1e-9);
        assert_eq!(welch_t(&[1.0], &[1.0, 2.0]), None);
        assert_eq!(welch_t(&[3.0, 3.0], &[3.0, 3.0, 3.0]), None);
        // One group without variance is fine.
        assert!(welch_t(&[3.0, 3.0], &[1.0, 2.0, 3.0]).is_some());
    }

    #[test]
    fn poisson() {
        // 30 views on 10 shares vs 12 on 10: n = 42, p0 = 0.5,
        // 2 * binom.sf(29, 42, 0.5).
        close(
            poisson_rates(30, 10, 12, 10).unwrap(),
            0.007_915_897_334_896_727,
            1e-9,
        );
        // Equal rates: the doubled tail (1.1365…) is capped at 1.
        assert_eq!(poisson_rates(10, 5, 20, 10), Some(1.0));
        // Unequal exposure: 2 * binom.cdf(5, 25, 0.75).
        close(
            poisson_rates(5, 30, 20, 10).unwrap(),
            2.486_920_180_899_687_7e-8,
            1e-7,
        );
        assert_eq!(poisson_rates(3, 0, 4, 5), None);
        assert_eq!(poisson_rates(0, 3, 0, 5), None);
        // Large counts stay finite and in range.
        let p = poisson_rates(5_000_000, 1_000_000, 4_990_000, 1_000_000).unwrap();
        assert!((0.0..=1.0).contains(&p), "{p}");
    }

    #[test]
    fn poisson_with_real_exposures() {
        // 40 awards in 28 days vs 25 in 13.5 days: p0 = 28 / 41.5,
        // min(1, 2 * min(binom.cdf(40, 65, p0), binom.sf(39, 65, p0))).
        close(
            poisson_rates_exposed(40, 28.0, 25, 13.5).unwrap(),
            0.372_589_452_674_501_1,
            1e-9,
        );
        // 12 in 28 days vs 30 in 2.75 days (the same expression).
        close(
            poisson_rates_exposed(12, 28.0, 30, 2.75).unwrap(),
            2.617_287_674_582_209e-22,
            1e-7,
        );
        assert_eq!(poisson_rates_exposed(3, 0.0, 4, 5.0), None);
        assert_eq!(poisson_rates_exposed(3, 1.0, 4, -5.0), None);
        assert_eq!(poisson_rates_exposed(0, 1.0, 0, 5.0), None);
        assert_eq!(
            poisson_rates(30, 10, 12, 10),
            poisson_rates_exposed(30, 10.0, 12, 10.0)
        );
    }

    #[test]
    fn bonferroni_adjustment() {
        assert_eq!(bonferroni(0.01, 3), 0.03);
        assert_eq!(bonferroni(0.4, 3), 1.0);
        assert_eq!(bonferroni(0.02, 0), 0.02);
    }

    #[test]
    fn type7_quantiles() {
        // numpy.quantile(a, [0.25, 0.5, 0.75]) (method "linear", type 7).
        let q = |a: &[f64]| {
            let mut s = a.to_vec();
            s.sort_by(f64::total_cmp);
            [0.25, 0.5, 0.75].map(|p| quantile_type7(&s, p).unwrap())
        };
        assert_eq!(q(&[1.0, 2.0, 3.0, 4.0, 10.0]), [2.0, 3.0, 4.0]);
        let got = q(&[0.1, 0.4, 0.35, 0.8]);
        for (g, w) in got.iter().zip([0.2875, 0.375, 0.5]) {
            close(*g, w, 1e-12);
        }
        assert_eq!(q(&[5.0]), [5.0, 5.0, 5.0]);
        assert_eq!(q(&[3.0, 1.0, 2.0]), [1.5, 2.0, 2.5]);
        assert_eq!(quantile_type7(&[], 0.5), None);
        assert_eq!(quantile_type7(&[1.0, 2.0], 1.0), Some(2.0));
    }

    #[test]
    fn percentile_ranks() {
        // scipy.stats.percentileofscore(a, score, kind='mean').
        assert_eq!(percentile_rank(&[1.0, 2.0, 2.0, 3.0, 5.0], 2.0), Some(40.0));
        close(
            percentile_rank(&[0.5, 0.25, 0.75, 0.5, 0.5, 1.0], 0.5).unwrap(),
            41.666_666_666_666_67,
            1e-12,
        );
        assert_eq!(percentile_rank(&[7.0], 7.0), Some(50.0));
        assert_eq!(percentile_rank(&[], 7.0), None);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0]), Some(3.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut [5.0, -1.0, 2.0]), Some(2.0));
    }
}
