package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/unstuck-dev/unstuck/internal/testenv"
)

func dynamoClient(srv *testenv.DynamoServer) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.Endpoint()),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		Retryer:      aws.NopRetryer{},
	})
}

func putAndGet(t *testing.T, c *dynamodb.Client) {
	t.Helper()
	ctx := t.Context()
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String("tbl"),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("k"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("k"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	// Creation is asynchronous (with Persist, it takes a LevelDB write).
	testenv.Eventually(t, 10*time.Second, func() error {
		out, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String("tbl")})
		if err != nil {
			return err
		}
		if out.Table.TableStatus != types.TableStatusActive {
			return fmt.Errorf("table %s", out.Table.TableStatus)
		}
		return nil
	})
	_, err = c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("tbl"), Item: map[string]types.AttributeValue{
		"k": &types.AttributeValueMemberS{Value: "key"}, "v": &types.AttributeValueMemberS{Value: "kept"},
	}})
	if err != nil {
		t.Fatalf("PutItem: %v", err)
	}
}

func getItem(ctx context.Context, c *dynamodb.Client) (string, error) {
	out, err := c.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("tbl"), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{"k": &types.AttributeValueMemberS{Value: "key"}}})
	if err != nil {
		return "", err
	}
	v, _ := out.Item["v"].(*types.AttributeValueMemberS)
	if v == nil {
		return "", errors.New("no item")
	}
	return v.Value, nil
}

func TestDynamoKillAndRestart(t *testing.T) {
	srv := testenv.DynamoDB(t)
	c := dynamoClient(srv)
	putAndGet(t, c)
	if v, err := getItem(t.Context(), c); err != nil || v != "kept" {
		t.Fatalf("GetItem = %q, %v", v, err)
	}
	srv.Kill()
	short, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := getItem(short, c); err == nil {
		t.Fatal("GetItem on a killed dynalite succeeded")
	}
	srv.Restart()
	// In memory: the restarted server is empty, and answers.
	var rnf *types.ResourceNotFoundException
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, err := getItem(t.Context(), c); !errors.As(err, &rnf) {
			return fmt.Errorf("GetItem after restart: %v, want ResourceNotFoundException", err)
		}
		return nil
	})
}

func TestDynamoPersistSurvivesKill(t *testing.T) {
	srv := testenv.DynamoDB(t, testenv.DynamoOptions{Persist: true})
	c := dynamoClient(srv)
	putAndGet(t, c)
	srv.Kill()
	srv.Restart()
	if v, err := getItem(t.Context(), c); err != nil || v != "kept" {
		t.Fatalf("GetItem after a restart with Persist = %q, %v; want kept", v, err)
	}
}

func TestDynamoServersArePrivate(t *testing.T) {
	a, b := testenv.DynamoDB(t), testenv.DynamoDB(t)
	if a.Endpoint() == b.Endpoint() {
		t.Fatalf("two servers on %s", a.Endpoint())
	}
	putAndGet(t, dynamoClient(a))
	var rnf *types.ResourceNotFoundException
	if _, err := getItem(t.Context(), dynamoClient(b)); !errors.As(err, &rnf) {
		t.Fatalf("the second server sees the first's table: %v", err)
	}
}
