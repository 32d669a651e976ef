package dynamostore

import (
	"context"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// index records that session id is bound to user, until the session's
// absolute deadline.
func (s *Store) index(ctx context.Context, id, user string, deadline time.Time) error {
	if len(userPfx)+len(user) > maxKeyBytes || !utf8.ValidString(user) {
		return fmt.Errorf("user id of %d bytes is not a valid key (at most %d bytes of UTF-8)", len(user), maxKeyBytes-len(userPfx))
	}
	if deadline.IsZero() {
		deadline = time.Now().Add(s.idxTTL)
	}
	return s.backoff.do(ctx, func(int) error {
		_, err := s.c.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: s.table,
			Item: map[string]types.AttributeValue{
				attrPK:   str(userPfx + user),
				attrSK:   str(id),
				attrTTL:  num(ttlSeconds(deadline)),
				attrDead: num(millis(deadline)), // exact, for UserSessions to filter on
			},
		}, noSDKRetries)
		return err
	})
}

// UserSessions implements session.Store with one Query on the user's
// index entries (more pages only past 1 MB of them).
func (s *Store) UserSessions(ctx context.Context, userID string) ([]string, error) {
	if userID == "" || len(userPfx)+len(userID) > maxKeyBytes || !utf8.ValidString(userID) {
		return nil, nil // such a user can never have been indexed
	}
	var ids []string
	var start map[string]types.AttributeValue
	now := time.Now().UnixMilli()
	for {
		var out *dynamodb.QueryOutput
		err := s.backoff.do(ctx, func(int) error {
			var err error
			out, err = s.c.Query(ctx, &dynamodb.QueryInput{
				TableName:                 s.table,
				KeyConditionExpression:    aws.String("#pk = :pk"),
				ProjectionExpression:      aws.String("#sk, #dl"),
				ExpressionAttributeNames:  map[string]string{"#pk": attrPK, "#sk": attrSK, "#dl": attrDead},
				ExpressionAttributeValues: map[string]types.AttributeValue{":pk": str(userPfx + userID)},
				ConsistentRead:            aws.Bool(true),
				ExclusiveStartKey:         start,
			}, noSDKRetries)
			return err
		})
		if err != nil {
			return nil, s.wrap("user sessions", err)
		}
		for _, item := range out.Items {
			sk, ok := item[attrSK].(*types.AttributeValueMemberS)
			if !ok {
				continue
			}
			// TTL deletes late: skip entries past their session's deadline.
			if e, ok := item[attrDead].(*types.AttributeValueMemberN); ok {
				if dl, err := strconv.ParseInt(e.Value, 10, 64); err == nil && dl <= now {
					continue
				}
			}
			ids = append(ids, sk.Value)
		}
		if len(out.LastEvaluatedKey) == 0 {
			return ids, nil
		}
		start = out.LastEvaluatedKey
	}
}
