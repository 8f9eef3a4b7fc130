//! Resolves a selection of extractors into tiers: an extractor runs in the
//! first tier after every extractor it depends on.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::manifest::{ColumnSpec, OBJECT_COLUMNS};
use super::{CallError, Extractor, Fault};

/// Why a selection cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The same extractor is selected twice.
    #[error("extractor `{0}` is selected more than once")]
    Duplicate(String),
    /// A dependency is not selected.
    #[error("extractor `{extractor}` depends on `{dependency}`, which is not in the pipeline")]
    MissingDependency {
        /// The extractor.
        extractor: String,
        /// What it needs.
        dependency: String,
    },
    /// An input column nothing provides.
    #[error("extractor `{extractor}` reads `{input}`, which no earlier extractor produces")]
    UnknownInput {
        /// The extractor.
        extractor: String,
        /// The input column.
        input: String,
    },
    /// Dependencies form a cycle.
    #[error("dependency cycle: {}", .0.join(" → "))]
    Cycle(Vec<String>),
    /// An extractor rejected its parameters.
    #[error("extractor `{extractor}`: parameter `{param}`: {message}")]
    InvalidParam {
        /// The extractor.
        extractor: String,
        /// The parameter.
        param: String,
        /// What is wrong.
        message: String,
    },
    /// No instance was free to open an extractor: the host is at capacity.
    #[error("extractor `{extractor}` cannot be opened now: the host is at capacity ({reason})")]
    Busy {
        /// The extractor.
        extractor: String,
        /// Why.
        reason: String,
    },
    /// An extractor could not be opened.
    #[error("extractor `{extractor}` cannot be opened: {reason}")]
    Open {
        /// The extractor.
        extractor: String,
        /// Why.
        reason: String,
    },
    /// A `columnar` extractor reads a column its interface cannot carry.
    #[error("extractor `{extractor}` cannot read `{input}`: {reason}")]
    Input {
        /// The extractor.
        extractor: String,
        /// The input column.
        input: String,
        /// Why.
        reason: String,
    },
}

impl PlanError {
    /// Where the error is in a pipeline's `extractors`, given their names in
    /// order: `extractors[i].params.p`, `extractors[i]`, or `extractors`
    /// when it is about the pipeline as a whole.
    pub fn field<S: AsRef<str>>(&self, names: &[S]) -> String {
        let at = |extractor: &str| match names.iter().position(|n| n.as_ref() == extractor) {
            Some(i) => format!("extractors[{i}]"),
            None => "extractors".to_owned(),
        };
        match self {
            PlanError::InvalidParam {
                extractor, param, ..
            } => format!("{}.params.{param}", at(extractor)),
            PlanError::Open { extractor, .. }
            | PlanError::Input { extractor, .. }
            | PlanError::Busy { extractor, .. } => at(extractor),
            _ => "extractors".to_owned(),
        }
    }
}

/// What the planner needs to know of an extractor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Name.
    pub name: String,
    /// Names it depends on.
    pub depends_on: Vec<String>,
    /// Input columns.
    pub inputs: Vec<String>,
    /// Output column names.
    pub outputs: Vec<String>,
}

/// Orders `nodes` into tiers of indices into `nodes`.
pub fn tiers(nodes: &[Node]) -> Result<Vec<Vec<usize>>, PlanError> {
    let mut index = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        if index.insert(node.name.as_str(), i).is_some() {
            return Err(PlanError::Duplicate(node.name.clone()));
        }
    }
    for node in nodes {
        for dep in &node.depends_on {
            if !index.contains_key(dep.as_str()) {
                return Err(PlanError::MissingDependency {
                    extractor: node.name.clone(),
                    dependency: dep.clone(),
                });
            }
        }
    }
    let mut tier_of: Vec<Option<usize>> = vec![None; nodes.len()];
    let mut tiers: Vec<Vec<usize>> = Vec::new();
    let mut placed = 0;
    while placed < nodes.len() {
        let ready: Vec<usize> = (0..nodes.len())
            .filter(|&i| tier_of[i].is_none())
            .filter(|&i| {
                nodes[i]
                    .depends_on
                    .iter()
                    .all(|d| tier_of[index[d.as_str()]].is_some_and(|t| t < tiers.len()))
            })
            .collect();
        if ready.is_empty() {
            return Err(PlanError::Cycle(find_cycle(nodes, &index, &tier_of)));
        }
        for &i in &ready {
            tier_of[i] = Some(tiers.len());
        }
        placed += ready.len();
        tiers.push(ready);
    }
    for node in nodes {
        for input in &node.inputs {
            let known = match input.split_once('.') {
                Some((dep, column)) => {
                    node.depends_on.iter().any(|d| d == dep)
                        && nodes[index[dep]].outputs.iter().any(|o| o == column)
                }
                None => OBJECT_COLUMNS.contains(&input.as_str()),
            };
            if !known {
                return Err(PlanError::UnknownInput {
                    extractor: node.name.clone(),
                    input: input.clone(),
                });
            }
        }
    }
    Ok(tiers)
}

/// A cycle among the unplaced nodes, as names, first name repeated last.
fn find_cycle(
    nodes: &[Node],
    index: &BTreeMap<&str, usize>,
    placed: &[Option<usize>],
) -> Vec<String> {
    let start = (0..nodes.len()).find(|&i| placed[i].is_none()).unwrap_or(0);
    let mut path = vec![start];
    let mut seen = BTreeSet::from([start]);
    let mut current = start;
    loop {
        let next = nodes[current]
            .depends_on
            .iter()
            .map(|d| index[d.as_str()])
            .find(|&d| placed[d].is_none());
        let Some(next) = next else { break };
        if seen.contains(&next) {
            let from = path.iter().position(|&p| p == next).unwrap_or(0);
            let mut cycle: Vec<String> = path[from..]
                .iter()
                .map(|&i| nodes[i].name.clone())
                .collect();
            cycle.push(nodes[next].name.clone());
            return cycle;
        }
        seen.insert(next);
        path.push(next);
        current = next;
    }
    path.iter().map(|&i| nodes[i].name.clone()).collect()
}

/// One configured extractor in a plan.
#[derive(Debug, Clone)]
pub struct Step {
    /// The extractor.
    pub extractor: Extractor,
    /// Parameters, as JSON text.
    pub params: String,
    /// Its concrete output columns with these parameters.
    pub columns: Vec<ColumnSpec>,
    /// Its tier, from 0.
    pub tier: usize,
}

/// A validated pipeline, in tiers.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Steps, tier by tier.
    pub tiers: Vec<Vec<Step>>,
}

/// A summary of a plan for people and APIs.
#[derive(Debug, Clone, Serialize)]
pub struct PlanSummary {
    /// Tier by tier, `name@version`.
    pub tiers: Vec<Vec<String>>,
    /// Output columns, `extractor.column` to Arrow type.
    pub output_schema: BTreeMap<String, String>,
}

impl Plan {
    /// Plans `selected` extractors with their parameters (JSON text): tiers,
    /// inputs, and parameters checked by opening each session once.
    pub fn new(selected: Vec<(Extractor, String)>) -> Result<Plan, PlanError> {
        let nodes: Vec<Node> = selected
            .iter()
            .map(|(e, _)| {
                let m = e.manifest();
                Node {
                    name: m.name.clone(),
                    depends_on: m.depends_on.clone(),
                    inputs: m.inputs.clone(),
                    outputs: m.outputs.iter().map(|c| c.name.clone()).collect(),
                }
            })
            .collect();
        let order = tiers(&nodes)?;
        let mut slots: Vec<Option<(Extractor, String)>> = selected.into_iter().map(Some).collect();
        let mut plan = Plan { tiers: Vec::new() };
        for (tier, members) in order.into_iter().enumerate() {
            let mut steps = Vec::new();
            for i in members {
                let Some((extractor, params)) = slots[i].take() else {
                    continue;
                };
                let name = extractor.manifest().name.clone();
                let columns = match extractor.columns(&params) {
                    Ok(columns) => columns,
                    Err(CallError::InvalidParam { param, message }) => {
                        return Err(PlanError::InvalidParam {
                            extractor: name,
                            param,
                            message,
                        });
                    }
                    Err(CallError::Fault(Fault::Busy(reason))) => {
                        return Err(PlanError::Busy {
                            extractor: name,
                            reason,
                        });
                    }
                    Err(e) => {
                        return Err(PlanError::Open {
                            extractor: name,
                            reason: e.to_string(),
                        });
                    }
                };
                steps.push(Step {
                    extractor,
                    params,
                    columns,
                    tier,
                });
            }
            plan.tiers.push(steps);
        }
        plan.check_columnar_inputs()?;
        Ok(plan)
    }

    /// Checks that every input of a `columnar` extractor has a type that
    /// interface carries (object columns always do).
    fn check_columnar_inputs(&self) -> Result<(), PlanError> {
        for step in self
            .steps()
            .filter(|s| s.extractor.interface() == super::Interface::Columnar)
        {
            for input in &step.extractor.manifest().inputs {
                let Some((producer, column)) = input.split_once('.') else {
                    continue;
                };
                let spec = self
                    .steps()
                    .filter(|s| s.extractor.manifest().name == producer)
                    .flat_map(|s| &s.columns)
                    .find(|c| c.name == column);
                if let Some(spec) = spec {
                    super::columnar::check_type(&spec.data_type).map_err(|reason| {
                        PlanError::Input {
                            extractor: step.extractor.manifest().name.clone(),
                            input: input.clone(),
                            reason,
                        }
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Every step, tier by tier.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.tiers.iter().flatten()
    }

    /// Tiers and output schema.
    pub fn summary(&self) -> PlanSummary {
        PlanSummary {
            tiers: self
                .tiers
                .iter()
                .map(|t| t.iter().map(|s| s.extractor.manifest().id()).collect())
                .collect(),
            output_schema: self
                .steps()
                .flat_map(|s| {
                    let name = &s.extractor.manifest().name;
                    s.columns
                        .iter()
                        .map(move |c| (format!("{name}.{}", c.name), c.data_type.to_string()))
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, deps: &[&str], inputs: &[&str]) -> Node {
        Node {
            name: name.into(),
            depends_on: deps.iter().map(|d| (*d).into()).collect(),
            inputs: inputs.iter().map(|i| (*i).into()).collect(),
            outputs: vec!["out".into()],
        }
    }

    fn names(nodes: &[Node], tiers: Vec<Vec<usize>>) -> Vec<Vec<&str>> {
        tiers
            .into_iter()
            .map(|t| t.into_iter().map(|i| nodes[i].name.as_str()).collect())
            .collect()
    }

    fn check(nodes: &[Node], expected: Result<Vec<Vec<&str>>, &str>) {
        let got = tiers(nodes)
            .map(|t| names(nodes, t))
            .map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_owned));
    }

    #[test]
    fn a_plan_error_names_its_place_in_the_pipeline() {
        let names = ["text-extract", "word-stats"];
        let param = PlanError::InvalidParam {
            extractor: "word-stats".into(),
            param: "min_word_chars".into(),
            message: "too small".into(),
        };
        assert_eq!(param.field(&names), "extractors[1].params.min_word_chars");
        let input = PlanError::Input {
            extractor: "text-extract".into(),
            input: "x.y".into(),
            reason: "no".into(),
        };
        assert_eq!(input.field(&names), "extractors[0]");
        assert_eq!(PlanError::Cycle(vec![]).field(&names), "extractors");
    }

    #[test]
    fn planner_cases() {
        // Independent extractors share tier 0.
        check(
            &[node("a", &[], &["content"]), node("b", &[], &["mime_type"])],
            Ok(vec![vec!["a", "b"]]),
        );
        // A chain gets one tier per link, whatever the selection order.
        check(
            &[
                node("c", &["b"], &["b.out"]),
                node("b", &["a"], &["a.out"]),
                node("a", &[], &[]),
            ],
            Ok(vec![vec!["a"], vec!["b"], vec!["c"]]),
        );
        // A diamond: the two middles run together.
        check(
            &[
                node("top", &[], &["content"]),
                node("left", &["top"], &["top.out"]),
                node("right", &["top"], &["top.out"]),
                node("bottom", &["left", "right"], &["left.out", "right.out"]),
            ],
            Ok(vec![vec!["top"], vec!["left", "right"], vec!["bottom"]]),
        );
        // An extractor waits for its deepest dependency.
        check(
            &[
                node("a", &[], &[]),
                node("b", &["a"], &[]),
                node("c", &["a", "b"], &[]),
            ],
            Ok(vec![vec!["a"], vec!["b"], vec!["c"]]),
        );
        check(&[], Ok(vec![]));
        // Cycles name their members in order.
        check(
            &[
                node("a", &["b"], &[]),
                node("b", &["c"], &[]),
                node("c", &["a"], &[]),
                node("d", &[], &[]),
            ],
            Err("dependency cycle: a → b → c → a"),
        );
        check(
            &[node("a", &["b"], &[]), node("b", &["a"], &[])],
            Err("dependency cycle: a → b → a"),
        );
        // Missing dependency, duplicates, unknown inputs.
        check(
            &[node("keywords", &["text-extract"], &["text-extract.text"])],
            Err("extractor `keywords` depends on `text-extract`, which is not in the pipeline"),
        );
        check(
            &[node("a", &[], &[]), node("a", &[], &[])],
            Err("extractor `a` is selected more than once"),
        );
        check(
            &[node("a", &[], &[]), node("b", &["a"], &["a.nope"])],
            Err("extractor `b` reads `a.nope`, which no earlier extractor produces"),
        );
        check(
            &[node("a", &[], &["body"])],
            Err("extractor `a` reads `body`, which no earlier extractor produces"),
        );
    }
}
