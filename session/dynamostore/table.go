package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
)

// ErrNoTTL reports a server that cannot expire items by itself (dynalite
// implements no UpdateTimeToLive). The table works, since the Store checks
// every deadline on read and write, but expired items stay until deleted
// by other means: acceptable for tests and local development only.
var ErrNoTTL = errors.New("dynamostore: the server does not support TTL; expired sessions will not be deleted")

// CreateTable creates the table a Store needs: partition key "pk" and sort
// key "sk" (strings), on-demand billing (PAY_PER_REQUEST), and TTL on the
// "exp" attribute. It waits until the table is active. It is idempotent: on
// an existing table it checks the key schema and enables TTL if it is off.
//
// On a server without TTL support it returns an error matching ErrNoTTL
// after creating the table.
func CreateTable(ctx context.Context, client *dynamodb.Client, table string) error {
	if err := checkTable(table); err != nil {
		return fmt.Errorf("dynamostore: %w", err)
	}
	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(table),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(attrPK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(attrSK), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrSK), KeyType: types.KeyTypeRange},
		},
		BillingMode: types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("dynamostore: create table %s: %w", table, err)
	}
	desc, err := waitActive(ctx, client, table)
	if err != nil {
		return err
	}
	if err := checkSchema(desc); err != nil {
		return fmt.Errorf("dynamostore: table %s exists with another key schema: %w", table, err)
	}
	return enableTTL(ctx, client, table)
}

// waitActive polls DescribeTable until the table is ACTIVE or ctx ends.
func waitActive(ctx context.Context, client *dynamodb.Client, table string) (*types.TableDescription, error) {
	wait := 50 * time.Millisecond
	for {
		out, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
		if err != nil {
			return nil, fmt.Errorf("dynamostore: describe table %s: %w", table, err)
		}
		if out.Table.TableStatus == types.TableStatusActive {
			return out.Table, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("dynamostore: table %s still %s: %w", table, out.Table.TableStatus, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

func checkSchema(desc *types.TableDescription) error {
	want := map[string]types.KeyType{attrPK: types.KeyTypeHash, attrSK: types.KeyTypeRange}
	if len(desc.KeySchema) != len(want) {
		return fmt.Errorf("%d key attributes, want pk (hash) and sk (range)", len(desc.KeySchema))
	}
	for _, k := range desc.KeySchema {
		if want[aws.ToString(k.AttributeName)] != k.KeyType {
			return fmt.Errorf("key %s %s, want pk (hash) and sk (range)", aws.ToString(k.AttributeName), k.KeyType)
		}
	}
	for _, a := range desc.AttributeDefinitions {
		if _, isKey := want[aws.ToString(a.AttributeName)]; isKey && a.AttributeType != types.ScalarAttributeTypeS {
			return fmt.Errorf("key %s has type %s, want S", aws.ToString(a.AttributeName), a.AttributeType)
		}
	}
	return nil
}

func enableTTL(ctx context.Context, client *dynamodb.Client, table string) error {
	d, err := client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		return fmt.Errorf("dynamostore: describe TTL of %s: %w", table, err)
	}
	if ttl := d.TimeToLiveDescription; ttl != nil {
		switch ttl.TimeToLiveStatus {
		case types.TimeToLiveStatusEnabled, types.TimeToLiveStatusEnabling:
			if name := aws.ToString(ttl.AttributeName); name != attrTTL {
				return fmt.Errorf("dynamostore: table %s has TTL on %q; the store needs it on %q", table, name, attrTTL)
			}
			return nil
		}
	}
	_, err = client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(attrTTL),
			Enabled:       aws.Bool(true),
		},
	})
	var api smithy.APIError
	if errors.As(err, &api) && api.ErrorCode() == "UnknownOperationException" {
		return fmt.Errorf("%w (table %s)", ErrNoTTL, table)
	}
	if err != nil {
		return fmt.Errorf("dynamostore: enable TTL on %s: %w", table, err)
	}
	return nil
}
