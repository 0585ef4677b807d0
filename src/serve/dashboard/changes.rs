//! The dashboard's decisions and experiments, read from the product's stream (its audit): a
//! decision as a before/after diff of the copy with its rule, metrics, generator and guardrail
//! verdicts; experiments with their arms, sample sizes, outcome and the statistic over time.

use actix_web::{HttpRequest, HttpResponse, web};
use mall_actors::audit::{Change, History};
use mall_actors::product::Policy;
use mall_actors::product::experiment::{self, Look};
use mall_events::domain::{ArmStats, Content};
use mall_projections::optimization::EXPERIMENTS;
use serde_json::Value;
use similar::{ChangeTag, TextDiff};
use uuid::Uuid;

use super::chart::{self, Chart, Series};
use super::{AppState, HOME, escape, signed_in, text};
use crate::readside::Filter;
use crate::serve::error::ApiError;
use crate::serve::reads::{parse_product, product_history};

/// Old and new text as one run of words: removed words in `<del>`, added ones in `<ins>`.
pub fn word_diff(old: &str, new: &str) -> String {
    // Runs of one kind as one element.
    let mut runs: Vec<(ChangeTag, String)> = Vec::new();
    for c in TextDiff::from_words(old, new).iter_all_changes() {
        match runs.last_mut() {
            Some((tag, text)) if *tag == c.tag() => text.push_str(c.value()),
            _ => runs.push((c.tag(), c.value().to_string())),
        }
    }
    runs.iter()
        .map(|(tag, text)| match tag {
            ChangeTag::Equal => escape(text),
            ChangeTag::Delete => format!("<del>{}</del>", escape(text)),
            ChangeTag::Insert => format!("<ins>{}</ins>", escape(text)),
        })
        .collect()
}

fn content_diff(old: Option<&Content>, new: Option<&Content>) -> String {
    let none = "<p>Nothing was generated.</p>".to_string();
    match (old, new) {
        (old, Some(Content::Description { text })) => {
            let before = match old {
                Some(Content::Description { text }) => text.as_str(),
                _ => "",
            };
            format!(
                "<p class=\"diff\" aria-describedby=\"diff-key\">{}</p><p id=\"diff-key\" class=\"key\">Removed words are struck through, added ones underlined.</p>\
                 <details><summary>Before and after, whole</summary><h4>Before</h4><blockquote>{}</blockquote><h4>After</h4><blockquote>{}</blockquote></details>",
                word_diff(before, text),
                escape(before),
                escape(text)
            )
        }
        (old, Some(Content::Tags { tags })) => {
            let before: Vec<&String> = match old {
                Some(Content::Tags { tags }) => tags.iter().collect(),
                _ => Vec::new(),
            };
            let cell = |t: &String, kind: &str| format!("<{kind}>{}</{kind}>", escape(t));
            let removed: Vec<String> = before.iter().filter(|t| !tags.contains(t)).map(|t| cell(t, "del")).collect();
            let added: Vec<String> = tags.iter().filter(|t| !before.contains(t)).map(|t| cell(t, "ins")).collect();
            let kept: Vec<String> = tags.iter().filter(|t| before.contains(t)).map(|t| escape(t)).collect();
            format!(
                "<p class=\"diff\">Tags: {} {} {}</p>",
                removed.join(" "),
                added.join(" "),
                if kept.is_empty() { String::new() } else { format!("(kept: {})", kept.join(", ")) }
            )
        }
        (old, Some(Content::Seo(seo))) => {
            let (t, m) = match old {
                Some(Content::Seo(o)) => (o.title.as_str(), o.meta_description.as_str()),
                _ => ("", ""),
            };
            format!(
                "<dl><dt>Title</dt><dd class=\"diff\">{}</dd><dt>Meta description</dt><dd class=\"diff\">{}</dd></dl>",
                word_diff(t, &seo.title),
                word_diff(m, &seo.meta_description)
            )
        }
        (_, Some(Content::Embedding { vector, text_hash })) => {
            format!("<p>A search embedding of {} dimensions (of text {text_hash:016x}).</p>", vector.len())
        }
        (_, None) => none,
    }
}

fn status_word(c: &Change) -> String {
    serde_json::to_value(c.status).ok().and_then(|v| v.as_str().map(|s| s.replace('_', " "))).unwrap_or_default()
}

fn arms_table(control: ArmStats, challenger: ArmStats) -> String {
    let row = |name: &str, a: ArmStats| {
        let rate = if a.views == 0 {
            "—".to_string()
        } else {
            format!("{:.1}%", a.conversions as f64 / a.views as f64 * 100.0)
        };
        format!("<tr><th scope=\"row\">{name}</th><td>{}</td><td>{}</td><td>{rate}</td></tr>", a.views, a.conversions)
    };
    format!(
        "<table><caption>Arms</caption><thead><tr><th scope=\"col\">Arm</th><th scope=\"col\">Views (sample)</th>\
         <th scope=\"col\">Conversions</th><th scope=\"col\">Rate</th></tr></thead><tbody>{}{}</tbody></table>",
        row("Control (the copy before)", control),
        row("Challenger (the new copy)", challenger)
    )
}

async fn history_of(state: &AppState, product: String) -> Result<(Vec<mall_events::RecordedEvent>, History), ApiError> {
    product_history(state, &parse_product(product)?).await
}

fn parse_id(field: &str, s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| ApiError::invalid(field, format!("{s:?} is not a UUID")))
}

/// `GET /admin/autonomous/decisions/{product}/{decision}`: one decision, whole.
pub async fn decision(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let csrf = match super::session(&state, &req) {
        Ok(c) => c,
        Err(answer) => return Ok(answer),
    };
    let (product, decision) = path.into_inner();
    let decision = parse_id("decision", &decision)?;
    let (_, h) = history_of(&state, product).await?;
    let c = h
        .changes
        .iter()
        .find(|c| c.decision_id == decision)
        .ok_or_else(|| ApiError::not_found(format!("no decision {decision} on {}", h.product_id)))?;
    let mut body = format!(
        "<h2>Decision: {} on “{}”</h2><dl class=\"facts\"><dt>Product</dt><dd>{}</dd><dt>Rule</dt><dd id=\"rule\">{}</dd>\
         <dt>Why</dt><dd>{}</dd><dt>Decided</dt><dd>{} (log position {})</dd><dt>Outcome</dt><dd id=\"outcome\">{}</dd>",
        escape(c.command.as_str()),
        escape(&h.title),
        escape(&h.product_id),
        escape(&c.rule),
        escape(&c.reason),
        c.decided_at.format("%Y-%m-%d %H:%M:%S UTC"),
        c.position,
        escape(&status_word(c)),
    );
    if let Some(r) = &c.rejected_reason {
        body.push_str(&format!("<dt>Refused because</dt><dd>{}</dd>", escape(r)));
    }
    body.push_str("</dl><h3 id=\"diff\">The copy, before and after</h3>");
    body.push_str(&content_diff(c.old.as_ref(), c.new.as_ref()));
    if let Some(x) = &c.experiment {
        let link = format!("{HOME}/experiments/{}/{}", escape(&h.product_id), x.experiment_id);
        let outcome = x.concluded.as_ref().map_or("running".to_string(), |k| {
            format!(
                "{} — {}",
                serde_json::to_value(k.outcome).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
                k.reason
            )
        });
        body.push_str(&format!(
            "<p>Tested in <a href=\"{link}\">experiment {}</a>: {}.</p>",
            x.experiment_id,
            escape(&outcome)
        ));
    }
    body.push_str("<h3>The evidence</h3><table><caption>Metrics at the decision</caption><thead><tr><th scope=\"col\">Metric</th><th scope=\"col\">Value</th></tr></thead><tbody>");
    for (k, v) in &c.evidence.metrics {
        body.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>", escape(k), number(*v)));
    }
    body.push_str(&format!(
        "</tbody></table><p>Folded from log positions {} to {} (stream version {}); district prior Beta({}, {}); budget {}.</p>",
        c.evidence.from_position,
        c.evidence.to_position,
        c.evidence.stream_version,
        number(c.evidence.prior_alpha),
        number(c.evidence.prior_beta),
        if c.evidence.budget_available { "available" } else { "spent" }
    ));
    match &c.generation {
        Some(g) => {
            body.push_str(&format!(
                "<h3>The generation</h3><p>Generator: <strong id=\"generator\">{}</strong>{}.</p>\
                 <table><caption>Guardrail verdicts</caption><thead><tr><th scope=\"col\">Check</th><th scope=\"col\">Verdict</th><th scope=\"col\">Found</th></tr></thead><tbody>",
                escape(&g.generator),
                c.generated_at.map(|t| format!(", {}", t.format("%Y-%m-%d %H:%M:%S UTC"))).unwrap_or_default()
            ));
            for v in &g.verdicts {
                let verdict =
                    if v.passed { "<span class=\"on\">passed</span>" } else { "<span class=\"off\">refused</span>" };
                body.push_str(&format!(
                    "<tr><td>{}</td><td>{verdict}</td><td>{}</td></tr>",
                    escape(&v.check),
                    escape(&v.detail)
                ));
            }
            body.push_str("</tbody></table>");
            let prompt = if g.prompt.is_empty() { "(none: built-in templates)".to_string() } else { escape(&g.prompt) };
            body.push_str(&format!(
                "<details><summary>The prompt</summary><pre>{prompt}</pre></details>\
                 <details><summary>The model's raw output</summary><pre>{}</pre></details>",
                escape(&g.raw_output)
            ));
        }
        None => body.push_str("<h3>The generation</h3><p>None recorded.</p>"),
    }
    body.push_str("<details><summary>The policy it was decided under</summary><table><tbody>");
    for (k, v) in &c.policy {
        body.push_str(&format!("<tr><th scope=\"row\">{}</th><td>{}</td></tr>", escape(k), number(*v)));
    }
    body.push_str("</tbody></table></details>");
    Ok(signed_in(&csrf, "decision", &format!("Decision on {} — mall", h.product_id), &body))
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { format!("{v:.4}") }
}

/// `GET /admin/autonomous/experiments`: every copy experiment, running first, newest first.
pub async fn experiments(state: &AppState) -> Result<String, ApiError> {
    let mut rows = state
        .read
        .rows("optimization", EXPERIMENTS, Filter::All)
        .await
        .map_err(crate::serve::storefront::sink_error)?;
    let n = |r: &mall_projections::change::Row, k: &str| r.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    rows.sort_by(|a, b| {
        (text(a.get("status").unwrap_or(&Value::Null)) != "running")
            .cmp(&(text(b.get("status").unwrap_or(&Value::Null)) != "running"))
            .then(n(b, "started_position").total_cmp(&n(a, "started_position")))
    });
    let mut body = format!(
        "<h2>Copy experiments</h2><p>{} in all. Each tests a rewrite against the copy before it; the always-valid \
         sequential test stops it when the likelihood ratio passes 1/α and the posterior agrees.</p>\
         <table><thead><tr><th scope=\"col\">Product</th><th scope=\"col\">Status</th><th scope=\"col\">Control views / conversions</th>\
         <th scope=\"col\">Challenger views / conversions</th><th scope=\"col\">P(challenger better)</th><th scope=\"col\">Chart</th></tr></thead><tbody>",
        rows.len()
    );
    for r in rows.iter().take(100) {
        let g = |k: &str| text(r.get(k).unwrap_or(&Value::Null));
        let product = g("product_id");
        let id = g("experiment_id");
        let prob = r.get("prob_challenger_better").and_then(Value::as_f64).map_or("—".into(), |p| format!("{p:.3}"));
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{} / {}</td><td>{} / {}</td><td>{prob}</td><td><a href=\"{HOME}/experiments/{}/{}\">statistic over time</a></td></tr>",
            escape(&product),
            escape(&g("status").replace('_', " ")),
            g("control_views"),
            g("control_conversions"),
            g("challenger_views"),
            g("challenger_conversions"),
            escape(&product),
            escape(&id),
        ));
    }
    body.push_str("</tbody></table>");
    Ok(body)
}

/// The statistic over time as two charts: the likelihood ratio (log scale) against its stopping
/// threshold, and the probability that the challenger converts better.
fn charts(looks: &[Look], alpha: f64, min_probability: f64) -> String {
    let x = |l: &Look| (l.control.views + l.challenger.views) as f64;
    let last = looks.last();
    let describe = |what: &str, v: f64| match last {
        Some(l) => format!(
            "{what} after each signal of the experiment, {} looks; at the last look ({} views) it is {v:.3}.",
            looks.len(),
            x(l)
        ),
        None => format!("No signal has reached the experiment yet: no {what}."),
    };
    let ticks = |v: f64| format!("{v:.0}");
    let lr = Chart {
        id: "lr",
        title: "log₁₀ likelihood ratio (the test stops at or above the dashed line)",
        description: describe(
            "the base-10 logarithm of the likelihood ratio",
            last.map_or(0.0, |l| l.likelihood_ratio.log10()),
        ),
        x_label: "views in both arms",
        series: vec![Series {
            label: "log₁₀ likelihood ratio",
            color: "#1f4e9c",
            points: looks.iter().map(|l| (x(l), l.likelihood_ratio.max(1e-12).log10())).collect(),
        }],
        rule: Some(((1.0 / alpha).log10(), "stop")),
        marks: Vec::new(),
        x_tick: &ticks,
    };
    let p = Chart {
        id: "prob",
        title: "P(challenger converts better)",
        description: describe(
            "the probability that the challenger converts better",
            last.map_or(0.5, |l| l.prob_challenger_better),
        ),
        x_label: "views in both arms",
        series: vec![Series {
            label: "P(challenger better)",
            color: "#0a6b2d",
            points: looks.iter().map(|l| (x(l), l.prob_challenger_better)).collect(),
        }],
        rule: Some((min_probability, "a winner needs this")),
        marks: Vec::new(),
        x_tick: &ticks,
    };
    chart::render(&lr) + &chart::render(&p)
}

/// `GET /admin/autonomous/experiments/{product}/{experiment}`: one experiment, with its arms,
/// sample sizes, outcome and the statistic over time, replayed from the product's stream.
pub async fn experiment(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let csrf = match super::session(&state, &req) {
        Ok(c) => c,
        Err(answer) => return Ok(answer),
    };
    let (product, experiment_id) = path.into_inner();
    let experiment_id = parse_id("experiment", &experiment_id)?;
    let (events, h) = history_of(&state, product).await?;
    let c = h
        .changes
        .iter()
        .find(|c| c.experiment.as_ref().is_some_and(|x| x.experiment_id == experiment_id))
        .ok_or_else(|| ApiError::not_found(format!("no experiment {experiment_id} on {}", h.product_id)))?;
    let x = c.experiment.as_ref().expect("found by its experiment");
    let policy = Policy::from_map(&c.policy);
    let looks = experiment::trajectory(&events, experiment_id, policy.experiment.tau)
        .map_err(|e| ApiError::unavailable(format!("cannot decode the product's stream: {e}")))?;
    let (control, challenger) = match (&x.concluded, looks.last()) {
        (Some(k), _) => (k.control, k.challenger),
        (None, Some(l)) => (l.control, l.challenger),
        (None, None) => (ArmStats::default(), ArmStats::default()),
    };
    let outcome = match &x.concluded {
        Some(k) => format!(
            "{}: {}",
            serde_json::to_value(k.outcome)
                .ok()
                .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
                .unwrap_or_default(),
            k.reason
        ),
        None => "running".into(),
    };
    let body = format!(
        "<h2>Experiment on “{}”</h2><dl class=\"facts\"><dt>Experiment</dt><dd>{experiment_id}</dd><dt>Started</dt><dd>{}</dd>\
         <dt>Outcome</dt><dd id=\"outcome\">{}</dd><dt>Decision</dt><dd><a href=\"{HOME}/decisions/{}/{}\">{} — the diff</a></dd>\
         <dt>Stopping rule</dt><dd>at least {} views an arm; likelihood ratio ≥ {:.0} (α = {}) and P ≥ {}; at most {} days</dd></dl>{}{}",
        escape(&h.title),
        x.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        escape(&outcome),
        escape(&h.product_id),
        c.decision_id,
        escape(&c.rule),
        policy.experiment.min_per_arm,
        1.0 / policy.experiment.alpha,
        policy.experiment.alpha,
        policy.experiment.min_probability,
        policy.experiment.max_duration.num_days(),
        arms_table(control, challenger),
        charts(&looks, policy.experiment.alpha, policy.experiment.min_probability),
    );
    Ok(signed_in(&csrf, "experiments", &format!("Experiment on {} — mall", h.product_id), &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_diff_marks_what_went_and_what_came_and_escapes_both() {
        let d = word_diff("Rings <b>.", "Six beech rings <b>, stacked.");
        assert!(d.contains("<del>Rings</del>") && d.contains("<ins>Six beech rings</ins>"), "{d}");
        assert!(d.contains("&lt;b&gt;") && !d.contains("<b>"), "{d}");
        assert_eq!(word_diff("same words", "same words"), "same words");
    }
}
