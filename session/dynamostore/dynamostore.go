package dynamostore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/unstuck-dev/unstuck/internal/storeurl/connect"
	"github.com/unstuck-dev/unstuck/session"
)

// API is the part of *dynamodb.Client the Store uses.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

// Options configures a Store: give URL, or Client and Table. Every other
// field's zero value is a sensible default.
type Options struct {
	// URL names the table as a store URL (see ParseURL):
	// dynamodb://TABLE?region=R&endpoint=URL&create=true. The Store
	// builds its own client from the AWS default configuration and, with
	// create=true, creates the table first.
	URL string
	// Client talks to DynamoDB, usually a *dynamodb.Client that the
	// caller keeps owning.
	Client API
	// Table is the table's name, with Client (a URL names its own);
	// CreateTable makes it with the right key schema and TTL.
	Table string
	// UserIndexTTL is how long a user index entry lives when the binding
	// carries no absolute deadline. Default 31 days.
	UserIndexTTL time.Duration
	// Backoff spaces retries of throttled and failed requests.
	Backoff Backoff
}

// Store is a session.Store on DynamoDB. It holds no goroutines or
// connections of its own, so it has no Close: even the client it builds
// from a URL talks HTTP, whose idle connections close by themselves. It is
// safe for concurrent use.
type Store struct {
	c       API
	table   *string
	name    string
	idxTTL  time.Duration
	backoff Backoff
}

var _ session.Store = (*Store)(nil)

// New returns a Store on an existing table through o.Client, or on the
// table o.URL names through a client of its own. With create=true in the
// URL it creates the table first; a server without TTL support (ErrNoTTL)
// is accepted then, as the Store checks deadlines itself.
func New(ctx context.Context, o Options) (*Store, error) {
	if err := connect.Either(o.URL, o.Client != nil); err != nil {
		return nil, fmt.Errorf("dynamostore: %w", err)
	}
	s := &Store{c: o.Client, name: o.Table, idxTTL: o.UserIndexTTL, backoff: o.Backoff.withDefaults()}
	if o.URL != "" {
		if o.Table != "" {
			return nil, errors.New("dynamostore: Options.Table: the URL names the table (dynamodb://TABLE); set Table only with Client")
		}
		loc, err := ParseURL(o.URL)
		if err != nil {
			return nil, err
		}
		client, err := loc.client(ctx)
		if err != nil {
			return nil, err
		}
		if loc.Create {
			if err := CreateTable(ctx, client, loc.Table); err != nil && !errors.Is(err, ErrNoTTL) {
				return nil, err
			}
		}
		s.c, s.name = client, loc.Table
	}
	if err := checkTable(s.name); err != nil {
		return nil, fmt.Errorf("dynamostore: Options.Table: %w", err)
	}
	s.table = aws.String(s.name)
	if s.idxTTL <= 0 {
		s.idxTTL = 31 * 24 * time.Hour
	}
	return s, nil
}

// Table is the name of the Store's table.
func (s *Store) Table() string { return s.name }

func (s *Store) wrap(op string, err error) error {
	if err == nil || errors.Is(err, session.ErrGone) || errors.Is(err, session.ErrConflict) {
		return err
	}
	return fmt.Errorf("dynamostore: %s on table %s: %w", op, s.name, err)
}

// newWriteID returns an id for one write; it only has to differ from the
// ids of other writes to the same item, so math/rand suffices.
func newWriteID() string {
	var b [12]byte
	for i := 0; i < len(b); i += 8 {
		v := rand.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return hex.EncodeToString(b[:])
}

// Load implements session.Store.
func (s *Store) Load(ctx context.Context, id string) (*session.Record, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	st, err := s.read(ctx, id)
	if err != nil {
		return nil, s.wrap("load", err)
	}
	if !st.live(time.Now()) {
		return nil, nil
	}
	return st.rec, nil
}

// read fetches the session item with a strongly consistent read.
func (s *Store) read(ctx context.Context, id string) (state, error) {
	var out *dynamodb.GetItemOutput
	err := s.backoff.do(ctx, func(int) error {
		var err error
		out, err = s.c.GetItem(ctx, &dynamodb.GetItemInput{
			TableName:      s.table,
			Key:            sessionKey(id),
			ConsistentRead: aws.Bool(true),
		}, noSDKRetries)
		return err
	})
	if err != nil {
		return state{}, err
	}
	return decodeState(out.Item)
}

// Commit implements session.Store.
func (s *Store) Commit(ctx context.Context, id string, c session.Change) (uint64, error) {
	if err := checkID(id); err != nil {
		return 0, err
	}
	// The index entry goes first: if the session write then fails, a
	// stale entry is harmless, while a binding without one would hide
	// the session from "log out everywhere".
	if c.SetUser && c.UserID != "" {
		if err := s.index(ctx, id, c.UserID, c.Deadline); err != nil {
			return 0, s.wrap("index user", err)
		}
	}
	var v uint64
	var err error
	if c.Create {
		v, err = s.create(ctx, id, c)
	} else {
		v, err = s.update(ctx, id, c)
	}
	return v, s.wrap("commit", err)
}

// conditionFailed returns the old item when err is a failed condition.
func conditionFailed(err error) (map[string]types.AttributeValue, bool) {
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return ccf.Item, true
	}
	return nil, false
}

func (s *Store) create(ctx context.Context, id string, c session.Change) (uint64, error) {
	r, err := c.Apply(nil)
	if err != nil {
		return 0, err
	}
	write := newWriteID()
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	err = s.backoff.do(ctx, func(attempt int) error {
		_, err := s.c.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: s.table,
			Item:      recordItem(id, r, write),
			// No item, or only an expired one (a tombstone included):
			// DynamoDB may not have deleted it yet.
			ConditionExpression: aws.String("attribute_not_exists(#pk) OR (#idl > :z AND #idl <= :now) OR (#dl > :z AND #dl <= :now)"),
			ExpressionAttributeNames: map[string]string{
				"#pk": attrPK, "#idl": attrIdle, "#dl": attrDead,
			},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":z": num(0), ":now": &types.AttributeValueMemberN{Value: now},
			},
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		}, noSDKRetries)
		if _, failed := conditionFailed(err); failed && attempt > 0 {
			// An earlier attempt may have landed with its answer lost.
			if st, rerr := s.read(ctx, id); rerr == nil && st.write == write {
				return nil
			}
		}
		return err
	})
	if _, failed := conditionFailed(err); failed {
		return 0, session.ErrConflict
	}
	if err != nil {
		return 0, err
	}
	return r.Version, nil
}

// maxExpr is DynamoDB's limit on the length of one expression.
const maxExpr = 4096

// exprNames builds ExpressionAttributeNames, one placeholder per session key.
type exprNames struct {
	names map[string]string
	keys  map[string]string // session key -> placeholder
}

func (n *exprNames) key(k string) string {
	if p, ok := n.keys[k]; ok {
		return p
	}
	p := "#k" + strconv.Itoa(len(n.keys))
	n.keys[k] = p
	n.names[p] = encodeKey(k)
	return p
}

func (s *Store) update(ctx context.Context, id string, c session.Change) (uint64, error) {
	write := newWriteID()
	now := time.Now()
	n := exprNames{
		names: map[string]string{
			"#pk": attrPK, "#gone": attrGone, "#idl": attrIdle, "#dl": attrDead,
			"#v": attrValues, "#ver": attrVersion, "#w": attrWrite,
		},
		keys: map[string]string{},
	}
	vals := map[string]types.AttributeValue{
		":z":   num(0),
		":now": num(now.UnixMilli()),
		":w":   str(write),
	}

	cond := []string{"attribute_exists(#pk)", "attribute_not_exists(#gone)", "(#idl = :z OR #idl > :now)", "(#dl = :z OR #dl > :now)"}
	for i, k := range sortedKeys(c.Expect) {
		p := n.key(k)
		if want := c.Expect[k]; want == nil {
			cond = append(cond, "attribute_not_exists(#v."+p+")")
		} else {
			e := ":e" + strconv.Itoa(i)
			vals[e] = bin(want)
			cond = append(cond, "#v."+p+" = "+e)
		}
	}

	set := []string{"#w = :w"}
	var remove []string
	deleted := map[string]bool{}
	for _, k := range c.Delete {
		deleted[k] = true
	}
	if c.Clear {
		kept := map[string][]byte{}
		for k, v := range c.Set {
			if !deleted[k] {
				kept[k] = v
			}
		}
		vals[":vals"] = valuesMap(kept)
		set = append(set, "#v = :vals")
	} else {
		for i, k := range sortedKeys(c.Set) {
			if deleted[k] {
				continue // Set then Delete: the delete wins
			}
			v := ":s" + strconv.Itoa(i)
			vals[v] = bin(c.Set[k])
			set = append(set, "#v."+n.key(k)+" = "+v)
		}
		for _, k := range slices.Sorted(maps.Keys(deleted)) {
			remove = append(remove, "#v."+n.key(k))
		}
	}
	if !c.IdleDeadline.IsZero() {
		n.names["#exp"] = attrTTL
		vals[":idl"] = num(millis(c.IdleDeadline))
		vals[":exp"] = num(ttlSeconds(c.IdleDeadline))
		set = append(set, "#idl = :idl", "#exp = :exp")
	}
	if c.SetUser {
		n.names["#uid"] = attrUser
		if c.UserID != "" {
			vals[":uid"] = str(c.UserID)
			set = append(set, "#uid = :uid")
		} else {
			remove = append(remove, "#uid")
		}
	}
	inc := int64(0)
	if c.Clear || len(c.Set) > 0 || len(c.Delete) > 0 || c.SetUser {
		inc = 1
	}
	vals[":inc"] = num(inc)
	upd := "SET " + strings.Join(set, ", ")
	if len(remove) > 0 {
		upd += " REMOVE " + strings.Join(remove, ", ")
	}
	upd += " ADD #ver :inc"
	condExpr := strings.Join(cond, " AND ")
	if len(upd) > maxExpr || len(condExpr) > maxExpr {
		return s.readModifyWrite(ctx, id, c)
	}

	// DynamoDB rejects placeholders that no expression uses.
	used := placeholders(upd + " " + condExpr)
	for p := range n.names {
		if !used[p] {
			delete(n.names, p)
		}
	}
	for p := range vals {
		if !used[p] {
			delete(vals, p)
		}
	}
	in := &dynamodb.UpdateItemInput{
		TableName:                           s.table,
		Key:                                 sessionKey(id),
		UpdateExpression:                    aws.String(upd),
		ConditionExpression:                 aws.String(condExpr),
		ExpressionAttributeNames:            n.names,
		ExpressionAttributeValues:           vals,
		ReturnValues:                        types.ReturnValueUpdatedNew,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	for range 3 {
		var out *dynamodb.UpdateItemOutput
		var old map[string]types.AttributeValue
		var failed bool
		err := s.backoff.do(ctx, func(int) error {
			var err error
			out, err = s.c.UpdateItem(ctx, in, noSDKRetries)
			old, failed = conditionFailed(err)
			return err
		})
		if !failed {
			if err != nil {
				return 0, err
			}
			if v, ok := versionOf(out.Attributes); ok {
				return v, nil
			}
			// A server that leaves an unchanged ADD out of UPDATED_NEW:
			// ask, since the item is live and carries our write or a
			// later one.
			st, err := s.read(ctx, id)
			if err != nil {
				return 0, err
			}
			if st.rec == nil {
				return 0, fmt.Errorf("%w: no version after the update", ErrCorrupt)
			}
			return st.rec.Version, nil
		}
		st, err := s.explain(ctx, id, old)
		if err != nil {
			return 0, err
		}
		switch {
		case st.write == write:
			// A retry of a write that had landed: the state we read
			// already includes it (or later writes).
			return st.rec.Version, nil
		case st.gone:
			return 0, session.ErrGone
		case !st.live(time.Now()):
			return 0, session.ErrNotFound
		case len(c.Expect) > 0:
			return 0, session.ErrConflict
		}
		// Live, with no Expect to fail: the item was missing or expired
		// when the condition ran and is live now (created since). Try
		// again against what is there now.
		vals[":now"] = num(time.Now().UnixMilli())
	}
	return 0, session.ErrConflict
}

// explain decodes the item a failed condition saw: from ALL_OLD when the
// server returns it, else from a consistent read (dynalite ignores
// ReturnValuesOnConditionCheckFailure).
func (s *Store) explain(ctx context.Context, id string, old map[string]types.AttributeValue) (state, error) {
	if len(old) > 0 {
		return decodeState(old)
	}
	return s.read(ctx, id)
}

func versionOf(attrs map[string]types.AttributeValue) (uint64, bool) {
	n, ok := attrs[attrVersion].(*types.AttributeValueMemberN)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(n.Value, 10, 64)
	return v, err == nil
}

// readModifyWrite applies a change too large for one update expression:
// read the item, apply the change in memory, and put it back on condition
// that no write came in between (the write id changes on every write,
// touches included).
func (s *Store) readModifyWrite(ctx context.Context, id string, c session.Change) (uint64, error) {
	write := newWriteID()
	for {
		st, err := s.read(ctx, id)
		if err != nil {
			return 0, err
		}
		switch {
		case st.gone:
			return 0, session.ErrGone
		case !st.live(time.Now()):
			return 0, session.ErrNotFound
		}
		next, err := c.Apply(st.rec)
		if err != nil {
			return 0, err
		}
		err = s.backoff.do(ctx, func(int) error {
			_, err := s.c.PutItem(ctx, &dynamodb.PutItemInput{
				TableName:                 s.table,
				Item:                      recordItem(id, next, write),
				ConditionExpression:       aws.String("#w = :old AND attribute_not_exists(#gone)"),
				ExpressionAttributeNames:  map[string]string{"#w": attrWrite, "#gone": attrGone},
				ExpressionAttributeValues: map[string]types.AttributeValue{":old": str(st.write)},
			}, noSDKRetries)
			return err
		})
		if _, failed := conditionFailed(err); !failed {
			if err != nil {
				return 0, err
			}
			return next.Version, nil
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		// Another write came in between (or ours landed with its answer
		// lost: the next read shows our write id). Start again.
		if now, rerr := s.read(ctx, id); rerr == nil && now.write == write {
			return now.rec.Version, nil
		}
	}
}

// Delete implements session.Store.
func (s *Store) Delete(ctx context.Context, id string) (*session.Record, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	var out *dynamodb.UpdateItemOutput
	err := s.backoff.do(ctx, func(int) error {
		var err error
		out, err = s.c.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: s.table,
			Key:       sessionKey(id),
			// The deadlines and TTL stay: the tombstone ends when the
			// session would have.
			UpdateExpression:    aws.String("SET #gone = :t, #w = :w REMOVE #v, #uid, #cr, #ver"),
			ConditionExpression: aws.String("attribute_exists(#pk) AND attribute_not_exists(#gone) AND (#idl = :z OR #idl > :now) AND (#dl = :z OR #dl > :now)"),
			ExpressionAttributeNames: map[string]string{
				"#pk": attrPK, "#gone": attrGone, "#w": attrWrite, "#v": attrValues, "#uid": attrUser,
				"#cr": attrCreated, "#ver": attrVersion, "#idl": attrIdle, "#dl": attrDead,
			},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":t": &types.AttributeValueMemberBOOL{Value: true}, ":w": str(newWriteID()),
				":z": num(0), ":now": num(time.Now().UnixMilli()),
			},
			ReturnValues: types.ReturnValueAllOld,
		}, noSDKRetries)
		return err
	})
	if _, failed := conditionFailed(err); failed {
		// No live session: never created, expired, or already deleted
		// (perhaps by an earlier attempt of this call whose answer was
		// lost; the session is gone either way).
		return nil, nil
	}
	if err != nil {
		return nil, s.wrap("delete", err)
	}
	st, err := decodeState(out.Attributes)
	if err != nil {
		return nil, s.wrap("delete", err)
	}
	return st.rec, nil
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// placeholders returns the #name and :value tokens in expr.
func placeholders(expr string) map[string]bool {
	out := map[string]bool{}
	for i := 0; i < len(expr); i++ {
		if expr[i] != '#' && expr[i] != ':' {
			continue
		}
		j := i + 1
		for j < len(expr) && (expr[j] == '_' || expr[j] >= 'a' && expr[j] <= 'z' || expr[j] >= 'A' && expr[j] <= 'Z' || expr[j] >= '0' && expr[j] <= '9') {
			j++
		}
		out[expr[i:j]] = true
		i = j - 1
	}
	return out
}
