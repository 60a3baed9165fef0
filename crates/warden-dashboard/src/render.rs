//! Server-side HTML: escaping, links, times and SVG line charts, so that pages show their data
//! without JavaScript. Every string that reaches a page goes through [`esc`] (subjects, routes,
//! messages are attacker-controlled), and every URL path segment through [`enc`].

use std::fmt::Write;

use warden_event::{Subject, SubjectKind};

/// `s` with the five HTML-significant characters replaced by entities (text and attributes).
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` percent-encoded as one URL path segment (only unreserved characters left as they are).
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The first segment of a subject page's URL.
pub(crate) fn kind_path(kind: SubjectKind) -> &'static str {
    match kind {
        SubjectKind::Identity => "identities",
        SubjectKind::Ip => "ips",
        SubjectKind::Tenant => "tenants",
        SubjectKind::ApiKey => "keys",
        SubjectKind::Route => "routes",
    }
}

/// A link to the subject's page, showing `kind:value`.
pub(crate) fn subject_link(s: &Subject) -> String {
    format!(
        r#"<a class="subject" href="/{}/{}">{}</a>"#,
        kind_path(s.kind),
        enc(&s.value),
        esc(&s.to_string())
    )
}

/// A link to an alert's page.
pub(crate) fn alert_link(id: &str, text: &str) -> String {
    format!(r#"<a href="/alerts/{}">{}</a>"#, enc(id), esc(text))
}

/// `ts` (ns since the epoch) as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn time(ts: i64) -> String {
    let secs = ts.div_euclid(1_000_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = warden_event::audit::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `ts` as `HH:MM` (UTC), for chart axes.
fn hour_minute(ts: i64) -> String {
    let rem = ts.div_euclid(1_000_000_000).rem_euclid(86_400);
    format!("{:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

/// A number for people: integers as such, others with up to two decimals.
pub(crate) fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Bytes for people (B, kB, MB, GB).
pub(crate) fn bytes(v: u64) -> String {
    let v = v as f64;
    match v {
        v if v >= 1e9 => format!("{} GB", num(v / 1e9)),
        v if v >= 1e6 => format!("{} MB", num(v / 1e6)),
        v if v >= 1e3 => format!("{} kB", num(v / 1e3)),
        v => format!("{} B", num(v)),
    }
}

/// Colours of chart lines, by position.
pub(crate) const PALETTE: [&str; 10] = [
    "#1f4fd1", "#b42318", "#b54708", "#067647", "#7a2ec2", "#0e7490", "#a16207", "#be185d",
    "#475467", "#15803d",
];

/// One line of a chart: a name for the legend and one value per step.
pub(crate) struct Line {
    pub(crate) name: String,
    pub(crate) values: Vec<f64>,
}

/// An SVG line chart (no script, no library): `lines` over time from `t0` (ns), one value per
/// `step_ns`, scaled to the largest value; a legend and the time axis (UTC) below it.
pub(crate) fn chart(
    id: &str,
    caption: &str,
    unit: &str,
    t0: i64,
    step_ns: i64,
    lines: &[Line],
) -> String {
    const W: f64 = 600.0;
    const H: f64 = 120.0;
    let n = lines.iter().map(|l| l.values.len()).max().unwrap_or(0);
    let ymax = lines
        .iter()
        .flat_map(|l| l.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let scale = if ymax > 0.0 { ymax } else { 1.0 };
    let x = |i: usize| {
        if n <= 1 {
            0.0
        } else {
            W * i as f64 / (n - 1) as f64
        }
    };
    let mut svg = format!(
        r##"<figure class="tchart" id="{id}"><figcaption>{}</figcaption><svg class="chart" viewBox="0 0 {W} {H}" preserveAspectRatio="none" role="img" aria-label="{}"><line x1="0" y1="{H}" x2="{W}" y2="{H}" stroke="#e2e5ea"/>"##,
        esc(caption),
        esc(caption),
        id = esc(id),
    );
    let mut legend = String::from(r#"<div class="legend">"#);
    for (i, line) in lines.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let points: Vec<String> = line
            .values
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let v = if v.is_finite() { *v } else { 0.0 };
                format!("{:.1},{:.1}", x(j), H - 2.0 - (H - 8.0) * v / scale)
            })
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" vector-effect="non-scaling-stroke" points="{}"><title>{}</title></polyline>"#,
            points.join(" "),
            esc(&line.name)
        );
        let _ = write!(
            legend,
            r#"<span><i style="background:{colour}"></i>{}</span>"#,
            esc(&line.name)
        );
    }
    legend.push_str("</div>");
    let t1 = t0.saturating_add(step_ns.saturating_mul(n.saturating_sub(1) as i64));
    let _ = write!(
        svg,
        r#"</svg>{legend}<div class="axis"><span>{} UTC</span><span>max {}{}</span><span>{} UTC</span></div></figure>"#,
        hour_minute(t0),
        num(ymax),
        esc(unit),
        hour_minute(t1)
    );
    svg
}

/// A table: a header row and rows of already-rendered cells; `empty` when there are none.
pub(crate) fn table(id: &str, headers: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    let mut out = format!(r#"<table id="{}"><thead><tr>"#, esc(id));
    for h in headers {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(
            out,
            r#"<tr><td class="empty" colspan="{}">{}</td></tr>"#,
            headers.len(),
            esc(empty)
        );
    }
    for row in rows {
        out.push_str("<tr>");
        for c in row {
            let _ = write!(out, "<td>{c}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A definition list of already-rendered values.
pub(crate) fn facts(items: &[(&str, String)]) -> String {
    let mut out = String::from("<dl>");
    for (k, v) in items {
        let _ = write!(out, "<dt>{}</dt><dd>{v}</dd>", esc(k));
    }
    out.push_str("</dl>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_strings_is_inert() {
        assert_eq!(
            esc(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
        let link = subject_link(&Subject::identity("<script>x</script>"));
        assert!(!link.contains("<script>"), "{link}");
        assert!(
            link.contains("/identities/%3Cscript%3Ex%3C%2Fscript%3E"),
            "{link}"
        );
    }

    #[test]
    fn times_are_utc_with_a_date() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_709_251_199_000_000_000), "2024-02-29 23:59:59 UTC");
    }

    #[test]
    fn charts_scale_to_the_largest_value() {
        let svg = chart(
            "c",
            "requests",
            "/s",
            0,
            60_000_000_000,
            &[Line {
                name: "<b>".into(),
                values: vec![0.0, 2.0, f64::NAN],
            }],
        );
        assert!(
            svg.contains("<polyline") && svg.contains("max 2/s"),
            "{svg}"
        );
        assert!(!svg.contains("<b>"), "{svg}");
    }
}
