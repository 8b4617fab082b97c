//! The deterministic scheduler: a workflow's topology as logical steps of agent turns.
//!
//! A step's turns depend only on the messages committed in earlier steps, never on timing, so
//! the turns of one step may run concurrently (and be batched) while the transcript stays the
//! same. Messages are ordered totally by (step, sender, sequence); each turn samples with its
//! own seed derived from (workflow seed, agent, the agent's turn number).

use super::turn::{Message, Turn, turn_seed};
use hearth_api::workflow::{Topology, Workflow};

/// Plans a workflow's steps from the messages committed so far.
pub struct Scheduler<'w> {
    workflow: &'w Workflow,
    step: u32,
    turns_taken: Vec<u32>,
    messages: Vec<Message>,
}

impl<'w> Scheduler<'w> {
    pub fn new(workflow: &'w Workflow) -> Self {
        Self { workflow, step: 0, turns_taken: vec![0; workflow.agents.len()], messages: Vec::new() }
    }

    /// Messages committed so far, in delivery order.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The turns of the next step (in delivery order: by agent, then sequence), or `None` when
    /// the workflow is done.
    pub fn next_step(&mut self) -> Option<Vec<Turn>> {
        let w = self.workflow;
        let step = self.step as usize;
        // (agent, instruction, which earlier messages it sees)
        let planned: Vec<(usize, String, Vec<usize>)> = match &w.topology {
            Topology::Sequential { order } => {
                let &agent = order.get(step)?;
                let seen = self.messages.len().checked_sub(1).into_iter().collect();
                vec![(agent, "Do your part of the task, building on the previous agent's output.".into(), seen)]
            }
            Topology::RoundRobin { members, rounds, judge } => {
                let all = (0..self.messages.len()).collect::<Vec<_>>();
                if step < members.len() * rounds {
                    vec![(
                        members[step % members.len()],
                        "Make your case on the task, answering what the others said.".into(),
                        all,
                    )]
                } else {
                    let judge = judge.filter(|_| step == members.len() * rounds)?;
                    vec![(judge, "Weigh the conversation and give your verdict.".into(), all)]
                }
            }
            Topology::PlannerWorkersCritic { planner, workers, critic, max_steps } => match step {
                0 => vec![(
                    *planner,
                    format!("Write a plan of at most {max_steps} numbered steps, one per line."),
                    vec![],
                )],
                1 => plan_steps(&self.messages[0].content, *max_steps)
                    .into_iter()
                    .enumerate()
                    .map(|(i, s)| {
                        (workers[i % workers.len()], format!("Carry out this step of the plan: {s}"), vec![0])
                    })
                    .collect(),
                2 => {
                    let all = (0..self.messages.len()).collect();
                    vec![(*critic, "Review the plan and the results: what is good, what is missing.".into(), all)]
                }
                _ => return None,
            },
            Topology::MapReduce { mapper, reducer, chunks } => match step {
                0 => chunks
                    .iter()
                    .map(|c| (*mapper, format!("Summarise this part of the text:\n\n{c}"), vec![]))
                    .collect(),
                1 => {
                    let all = (0..self.messages.len()).collect();
                    vec![(*reducer, "Combine the summaries of the parts into one summary.".into(), all)]
                }
                _ => return None,
            },
        };
        let mut turns: Vec<Turn> = planned
            .into_iter()
            .map(|(agent, instruction, seen)| {
                let turn = self.turns_taken[agent];
                self.turns_taken[agent] += 1;
                let (request, seed) = (self.request(&instruction, &seen), turn_seed(w.seed, agent, turn));
                let seen = seen.iter().map(|&i| self.messages[i].clone()).collect();
                Turn { agent, turn, seq: 0, request, seed, seen }
            })
            .collect();
        turns.sort_by_key(|t| (t.agent, t.turn));
        let mut seq_of = vec![0u32; w.agents.len()];
        for t in &mut turns {
            t.seq = seq_of[t.agent];
            seq_of[t.agent] += 1;
        }
        Some(turns)
    }

    /// Commits the replies of the step's turns (in the order `next_step` gave them); a turn
    /// without a reply (its agent failed, or said nothing) leaves no message.
    pub fn commit(&mut self, turns: &[Turn], replies: Vec<Option<String>>) {
        for (turn, content) in turns.iter().zip(replies) {
            let Some(content) = content else { continue };
            let from = self.workflow.agents[turn.agent].name.clone();
            self.messages.push(Message { step: self.step, from, seq: turn.seq, content });
        }
        self.step += 1;
    }

    fn request(&self, instruction: &str, seen: &[usize]) -> String {
        let mut text = format!("Task: {}\n", self.workflow.task);
        if !seen.is_empty() {
            text.push_str("\nSo far:\n");
            for &i in seen {
                let m = &self.messages[i];
                text.push_str(&format!("{}: {}\n", m.from, m.content));
            }
        }
        text.push('\n');
        text.push_str(instruction);
        text
    }
}

/// The steps of a plan: its non-empty lines with list markers removed, at most `max`; the whole
/// plan as one step when it has no lines.
fn plan_steps(plan: &str, max: usize) -> Vec<String> {
    let steps: Vec<String> = plan
        .lines()
        .map(|l| l.trim().trim_start_matches(|c: char| c.is_ascii_digit() || ".)-*# ".contains(c)).trim())
        .filter(|l| !l.is_empty())
        .take(max)
        .map(str::to_string)
        .collect();
    if steps.is_empty() { vec![plan.trim().to_string()] } else { steps }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_api::workflow::AgentSpec;

    fn workflow(topology: Topology, n: usize) -> Workflow {
        let agents = (0..n).map(|i| AgentSpec::new(format!("a{i}"), "s")).collect();
        Workflow { name: "w".into(), seed: 1, task: "T".into(), agents, topology }
    }

    /// Runs the scheduler with replies "<agent>#<turn>"; returns the agents of each step.
    fn steps(w: &Workflow, plan_reply: &str) -> Vec<Vec<usize>> {
        let mut s = Scheduler::new(w);
        let mut out = Vec::new();
        while let Some(turns) = s.next_step() {
            out.push(turns.iter().map(|t| t.agent).collect());
            let replies = turns
                .iter()
                .map(|t| Some(if t.agent == 0 { plan_reply.to_string() } else { format!("{}#{}", t.agent, t.turn) }))
                .collect();
            s.commit(&turns, replies);
            assert!(out.len() < 100, "the schedule ends");
        }
        out
    }

    #[test]
    fn topologies_plan_their_steps() {
        let rr = workflow(Topology::RoundRobin { members: vec![0, 1], rounds: 2, judge: Some(2) }, 3);
        assert_eq!(steps(&rr, "x"), [vec![0], vec![1], vec![0], vec![1], vec![2]]);
        let seq = workflow(Topology::Sequential { order: vec![2, 0, 1] }, 3);
        assert_eq!(steps(&seq, "x"), [vec![2], vec![0], vec![1]]);
        let pwc =
            workflow(Topology::PlannerWorkersCritic { planner: 0, workers: vec![1, 2], critic: 3, max_steps: 3 }, 4);
        assert_eq!(steps(&pwc, "1. a\n2. b\n\n3) c\n4. d"), [vec![0], vec![1, 1, 2], vec![3]]);
        let mr = workflow(Topology::MapReduce { mapper: 1, reducer: 0, chunks: vec!["p".into(), "q".into()] }, 2);
        assert_eq!(steps(&mr, "x"), [vec![1, 1], vec![0]]);
        let mapped = Scheduler::new(&mr).next_step().unwrap();
        assert_eq!(mapped.iter().map(|t| (t.agent, t.turn, t.seq)).collect::<Vec<_>>(), [(1, 0, 0), (1, 1, 1)]);
    }

    #[test]
    fn turns_see_what_their_topology_shows_and_get_their_own_seeds() {
        let w = workflow(Topology::RoundRobin { members: vec![0, 1], rounds: 2, judge: None }, 2);
        let mut s = Scheduler::new(&w);
        let first = s.next_step().unwrap();
        s.commit(&first, vec![Some("hello".into())]);
        let second = s.next_step().unwrap();
        assert!(second[0].request.contains("a0: hello"), "{}", second[0].request);
        assert_eq!(second[0].seen, [Message { step: 0, from: "a0".into(), seq: 0, content: "hello".into() }]);
        s.commit(&second, vec![Some("hi".into())]);
        let third = s.next_step().unwrap();
        assert_eq!((third[0].agent, third[0].turn), (0, 1));
        assert_ne!(third[0].seed, first[0].seed, "each turn has its own stream");
        assert_eq!(third[0].seed, turn_seed(1, 0, 1));
        assert_ne!(turn_seed(1, 0, 1), turn_seed(1, 1, 0));
        assert_ne!(turn_seed(1, 0, 0), turn_seed(2, 0, 0));
        let m = s.messages();
        assert_eq!((m[1].step, m[1].from.as_str(), m[1].seq), (1, "a1", 0));
    }

    #[test]
    fn plans_are_split_into_steps() {
        assert_eq!(plan_steps("1. Boil water\n2) Add tea\n- Wait", 5), ["Boil water", "Add tea", "Wait"]);
        assert_eq!(plan_steps("Just do it", 5), ["Just do it"]);
        assert_eq!(plan_steps("\n\n", 5), [""]);
    }
}
