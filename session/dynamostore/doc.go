// Package dynamostore is a session.Store on Amazon DynamoDB (or a
// DynamoDB-compatible server such as dynalite), through aws-sdk-go-v2.
//
// # Layout
//
// One table, keyed by a partition key "pk" and a sort key "sk" (both
// strings); CreateTable makes it. Each session is one item,
// pk "s#<id>", sk "-", where the id is already a hash of the token, so a
// dump of the table yields no usable session:
//
//	v    map   encoded key -> binary value
//	ver  number   version: ADD 1 on every commit that changes values or the user
//	uid  string   the bound user, absent when unbound
//	cr, dl, idl   created, absolute and idle deadlines (unix milliseconds)
//	exp  number   DynamoDB TTL attribute (unix seconds)
//	gone bool     set on a tombstone
//	w    string   id of the last write
//
// # Writes
//
// A commit that changes some keys is one UpdateItem: SET v.#k = :val and
// REMOVE v.#k for exactly the keys it names (keys go through
// ExpressionAttributeNames, as they are arbitrary strings), ADD ver, and
// SET idl/exp when it moves the idle deadline; a ConditionExpression
// requires the item to exist, not be a tombstone, not have expired, and
// hold each Expect value. Two requests that change different keys both
// keep their change, and Expect gives compare-and-swap on one key. Create
// is a PutItem conditioned on there being no item (or only an expired one).
// When a condition fails, the item as it was (ReturnValuesOnConditionCheckFailure
// ALL_OLD, or a consistent read on servers that ignore it, like dynalite)
// tells ErrConflict from ErrGone (a tombstone) and ErrNotFound. A change
// too large for DynamoDB's 4 KB expression limit is applied by a
// read-modify-write conditioned on the write id, so it is just as atomic.
//
// Delete is one UpdateItem that removes the values and sets gone, keeping
// the deadlines and the TTL: the tombstone lasts until the session would
// have expired, so a request that finishes after logout fails with ErrGone
// instead of bringing the session back.
//
// # Expiry
//
// exp is the session's expiry in epoch seconds, rounded up, and the table
// has TTL enabled on it; DynamoDB deletes expired items only within a day
// or two, so every read and every condition also checks the millisecond
// deadlines: an expired item is never returned and never written to. A
// touch sets exp from the new idle deadline; when the absolute deadline is
// earlier, the item is deleted later than it expires, never sooner.
// Expiry uses the clocks of the instances, which should be synchronised.
//
// # User index
//
// Each session bound to a user has an index item pk "u#<user>",
// sk "<session id>", with its own TTL at the session's absolute deadline.
// UserSessions is one strongly consistent Query on pk: no Scan. A global
// secondary index on uid would cost no extra write, but GSIs are only
// eventually consistent: "log out everywhere" right after a login on
// another device could miss that session, and the Store contract requires
// every live session to be listed. A string set on one item per user
// would make that item hot and capped at 400 KB. So binding costs one
// extra PutItem, before the session's own write, so an index entry never
// lags a binding; ended or rebound sessions linger until their TTL, which
// the contract allows (the Manager checks each with Load).
//
// # Round trips
//
// Load is one GetItem (strongly consistent); a commit is one UpdateItem
// (PutItem to create), plus one PutItem when it binds a user; Delete is
// one UpdateItem.
//
// # Failures
//
// Throttling (ProvisionedThroughputExceededException, ThrottlingException,
// RequestLimitExceeded), 5xx answers and failed connections are retried
// with exponential backoff and full jitter while the caller's deadline
// allows (the client's own retryer is turned off for the Store's calls, so
// attempts do not multiply). A retried write that had in fact landed is
// recognised by its write id rather than applied twice, so a retried
// compare-and-swap never adds an item to a cart twice. Other errors are
// returned wrapped with the operation and table, for the Manager's error
// hook.
//
// # Example
//
//	store, err := dynamostore.New(ctx, dynamostore.Options{URL: "dynamodb://sessions?region=eu-west-1"})
//	if err != nil {
//		log.Fatal(err)
//	}
//	m, err := session.New(session.Config{Store: store})
//
// or, with a client configured elsewhere:
//
//	client := dynamodb.NewFromConfig(cfg)
//	if err := dynamostore.CreateTable(ctx, client, "sessions"); err != nil {
//		log.Fatal(err)
//	}
//	store, err := dynamostore.New(ctx, dynamostore.Options{Client: client, Table: "sessions"})
package dynamostore
