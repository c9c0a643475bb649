package auth

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestVerify(t *testing.T) {
	s, err := NewSigner("secret")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewSigner("other-secret")
	good, _ := s.Sign("u1", "Alice", RoleMod, []string{"r1"}, time.Hour)
	wrongSecret, _ := other.Sign("u1", "Alice", RoleViewer, nil, time.Hour)
	expired, _ := s.SignClaims(Claims{Role: RoleViewer, RegisteredClaims: jwt.RegisteredClaims{Subject: "u", ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Minute))}})
	future, _ := s.SignClaims(Claims{Role: RoleViewer, RegisteredClaims: jwt.RegisteredClaims{Subject: "u",
		NotBefore: jwt.NewNumericDate(time.Now().Add(time.Hour)), ExpiresAt: jwt.NewNumericDate(time.Now().Add(2 * time.Hour))}})
	noExp, _ := s.SignClaims(Claims{Role: RoleViewer, RegisteredClaims: jwt.RegisteredClaims{Subject: "u"}})
	noSub, _ := s.SignClaims(Claims{Role: RoleViewer, RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}})
	badRole, _ := s.SignClaims(Claims{Role: "admin", RegisteredClaims: jwt.RegisteredClaims{Subject: "u", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}})
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, Claims{Role: RoleService, RegisteredClaims: jwt.RegisteredClaims{Subject: "u", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}}).SignedString([]byte("secret"))
	// alg "none": header {"alg":"none","typ":"JWT"}, the good token's payload, no signature.
	parts := strings.Split(good, ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"u1","role":"service","exp":9999999999}`)) + "." + parts[2]

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"good", good, nil},
		{"wrong secret", wrongSecret, ErrInvalid},
		{"expired", expired, ErrExpired},
		{"not yet valid", future, ErrNotYetValid},
		{"no exp", noExp, ErrInvalid},
		{"no sub", noSub, ErrInvalid},
		{"unknown role", badRole, ErrInvalid},
		{"HS512", hs512, ErrInvalid},
		{"alg none", none, ErrInvalid},
		{"tampered payload", tampered, ErrInvalid},
		{"garbage", "abc.def", ErrInvalid},
		{"empty", "", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := s.Verify(tt.token)
			if tt.want == nil {
				if err != nil || c.UID() != "u1" || c.Role != RoleMod || c.Name != "Alice" {
					t.Fatalf("got %+v, %v", c, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCanModerate(t *testing.T) {
	tests := []struct {
		role  string
		rooms []string
		room  string
		ok    bool
	}{
		{RoleMod, []string{"a"}, "a", true},
		{RoleMod, []string{"a"}, "b", false},
		{RoleStreamer, []string{"*"}, "b", true},
		{RoleService, nil, "b", true},
		{RoleViewer, []string{"*"}, "b", false},
	}
	for _, tt := range tests {
		c := Claims{Role: tt.role, Rooms: tt.rooms}
		if got := c.CanModerate(tt.room); got != tt.ok {
			t.Errorf("%s %v CanModerate(%s) = %v", tt.role, tt.rooms, tt.room, got)
		}
	}
}
