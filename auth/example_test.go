package auth_test

import (
	"context"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/auth"
)

func ExampleVerifier_Verify() {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	secret := "an-hs256-secret-of-32-bytes-min!"
	v, err := auth.NewVerifier(ctx, []auth.IssuerConfig{{
		Issuer:      "https://idp.example.com",
		Secret:      bulkhead.Secret(secret),
		Audience:    "bulkhead",
		TenantClaim: "tid",
	}}, auth.Options{Now: func() time.Time { return now }})
	if err != nil {
		panic(err)
	}
	defer v.Close()

	claims := jwt.MapClaims{
		"iss": "https://idp.example.com", "sub": "alice", "aud": "bulkhead",
		"exp": now.Add(time.Hour).Unix(), "tid": "6f1c2b8e-7f7e-4d6b-9a57-0d2f3c4b5a69",
	}
	token, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	p, err := v.Verify(ctx, token)
	fmt.Println(p.Subject, p.Entity, p.Tenant, err)

	claims["exp"] = now.Add(-time.Hour).Unix()
	expired, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	_, err = v.Verify(ctx, expired)
	fmt.Println(auth.Reason(err))
	// Output:
	// alice 93ffab44-44d3-5eb6-b820-63b6c3307551 6f1c2b8e-7f7e-4d6b-9a57-0d2f3c4b5a69 <nil>
	// expired
}
