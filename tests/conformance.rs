//! The conformance suite (`pwlu::conformance`: kernel cases as data) on every GPU backend under test, through
//! both input paths, and on the CPU backend with one thread and with several, with every vector instruction
//! set this CPU has: each case is planned like a model (`Plan::new`), run, and compared with the reference. The browser suite (`web/tests/api.rs`) runs the
//! same cases on WebGPU.

mod common;

use common::contexts_for_both_input_paths;
use pwlu::conformance::{cases, failures};
use pwlu::cpu::{CpuContext, CpuOptions, CpuPlan, Simd};
use pwlu::gpu::GpuPlan;

#[test]
fn every_case_agrees_with_the_reference_on_every_backend() {
    let cases = cases();
    assert!(cases.len() >= 40, "the suite lost cases: {}", cases.len());
    for ctx in contexts_for_both_input_paths() {
        let failures = failures(&cases, |case| {
            GpuPlan::new(&ctx, &case.graph, case.input.shape().n)?.run_blocking(&ctx, &case.input)
        });
        assert!(
            failures.is_empty(),
            "{} of {} cases fail on {} (input stage: {}):\n{}",
            failures.len(),
            cases.len(),
            ctx.adapter(),
            ctx.stages_inputs(),
            failures.join("\n")
        );
        println!("{} cases agree on {}", cases.len(), ctx.adapter());
    }
}

#[test]
fn every_case_agrees_with_the_reference_on_the_cpu_backend() {
    let cases = cases();
    // Every kernel body is compiled once per instruction set and picked at run time: test each one there is.
    let simds = [Simd::Baseline, Simd::Avx2Fma, Simd::Avx512]
        .into_iter()
        .filter(|&simd| simd <= Simd::detected());
    let configurations = [(1, None), (3, None)]
        .into_iter()
        .chain(simds.map(|simd| (2, Some(simd))));
    for (threads, max_simd) in configurations {
        let ctx = CpuContext::new(&CpuOptions {
            threads: Some(threads),
            max_simd,
            ..Default::default()
        })
        .expect("CPU context");
        let failures = failures(&cases, |case| {
            // Twice on one plan: a run must not depend on what the previous one left in memory.
            let mut plan = CpuPlan::new(&ctx, &case.graph, case.input.shape().n)?;
            plan.run(&ctx, &case.input)?;
            plan.run(&ctx, &case.input)
        });
        assert!(
            failures.is_empty(),
            "{} of {} cases fail on {}:\n{}",
            failures.len(),
            cases.len(),
            ctx.describe(),
            failures.join("\n")
        );
        println!("{} cases agree on {}", cases.len(), ctx.describe());
    }
}

#[test]
fn a_wrong_result_fails_the_check() {
    // The check must be able to fail: every case against a slightly changed output.
    for case in cases() {
        let mut wrong = case.expected().expect("the reference runs every case");
        let Some(v) = wrong.data_mut().iter_mut().find(|v| v.is_finite()) else {
            continue;
        };
        *v += 1e-2 * v.abs().max(1.0);
        assert!(
            case.check(&wrong).is_err(),
            "{}: a wrong output passed",
            case.name
        );
    }
}
