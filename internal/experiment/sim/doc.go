// Package sim is `unstuck experiment --simulate`: the experiment's
// workload model (package model) run as a discrete-event simulation, no
// sockets, for the four architectures from a few instances to 10,000 and
// a thousand users to ten million, to show how load imbalance, sessions
// lost per crash, the time a new instance takes to carry its share, and
// store load grow with scale.
//
// # Using it from the command
//
//	insts, err := sim.ParseRange("instances", *instancesFlag) // "3..10000", "100", "1e3..1e7"
//	users, err := sim.ParseRange("users", *usersFlag)          // errors name the flag: "--users: ..."
//	cfg := sim.Config{Model: params, Archs: archs, Instances: insts, Users: users}
//	if path != "" { // a live run's results.json, for calibration
//		if cfg.Live, err = sim.LoadLive(path); err != nil { ... }
//	}
//	rep, err := sim.Run(ctx, cfg, func(p sim.Progress) { ... }) // rep is non-nil on cancellation
//	rep.WriteJSON(jsonFile)  // DIR/simulation.json
//	rep.WriteHTML(htmlFile)  // DIR/simulation.html
//
// Run returns the report so far together with ctx.Err() when ctx is
// cancelled (Ctrl-C): write it anyway. Progress arrives about once per
// simulated second of each run. Config's zero value is the sweep
// (3..10000 instances, 1e3..1e7 users, model.Default(), all four
// architectures); Config.Model carries --seed and --duration.
//
// # How it works, and why it is faithful
//
// Users log in and leave as events of a heap (fed by a calendar of 1 ms
// buckets, so it stays small), with the timeline's faults, the phases and
// 1 s windows, in a fixed order for a seed; users who left free their slot,
// so memory follows the active population and not the duration. The
// requests between events are a Poisson process at the users' total rate.
//
//   - store and cookie: every request goes through lb's p2c with real
//     in-flight counts (a request is in flight for the model's service
//     time), because p2c's choice depends on the load at that instant.
//   - affinity: every request goes to its user's pinned instance, drawn in
//     proportion to the instances' pinned rates, unless lb's bounded-load
//     rule (in-flight + 1 > ceil(c x (total + 1) / n), or a drain) spills
//     it: then p2c picks another instance and the requesting user, drawn in
//     proportion to its rate, is re-pinned there. Past Config.ExactLimit
//     requests users are pinned as tokens per instance and rate class
//     instead of by identity (see tokens.go): spills re-pin users so often
//     that where a user is says nothing about its age.
//   - uploads (all architectures): the upload's progress stream is a
//     request in flight at the balancer until its job ends (jobs.go): a
//     FIFO queue for JobWorkers per instance, then UploadJob. These long
//     requests dominate the in-flight counts p2c and the spill compare.
//     The sweep provisions the workers in proportion to load
//     (model.Params.WorkersAtScale: the live run's utilisation at every
//     scale); the calibration keeps the live run's own.
//   - sticky: nothing about a request's destination depends on when it is
//     sent, so past Config.ExactLimit requests are not routed one by one:
//     an instance's requests in a window are Poisson with mean the integral
//     of its pinned users' rates, the superposition of their Poisson
//     processes, exact in distribution. New users are pinned by p2c on
//     in-flight counts drawn from their stationary law, Poisson(rate x
//     service time) (an M/G/infinity queue; PASTA), plus the progress
//     streams open there, which are tracked one by one.
//
// Before the sweep the simulator's own placement code is checked against
// balls-into-bins theory (one choice, two choices, bounded loads), and,
// given a live results.json, the simulation is replicated over seeds at
// the live run's parameters and each live figure is compared with the
// central 95% of the replications.
package sim
