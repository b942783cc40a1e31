package audit

import "testing"

const seedTree = `{OPEXPR :opno 2972 :opfuncid 2956 :opresulttype 16 :opretset false :opcollid 0 :inputcollid 0 :args ({VAR :varno 1 :varattno 1 :vartype 2950 :vartypmod -1 :varcollid 0 :varlevelsup 0 :varnosyn 1 :varattnosyn 1 :location 44} {SUBLINK :subLinkType 4 :subLinkId 0 :testexpr <> :operName <> :subselect {QUERY :commandType 1 :querySource 0 :canSetTag true :utilityStmt <> :resultRelation 0 :hasAggs false :rtable <> :jointree {FROMEXPR :fromlist <> :quals <>} :targetList ({TARGETENTRY :expr {FUNCEXPR :funcid 16400 :funcresulttype 2950 :funcretset false :funcvariadic false :funcformat 0 :funccollid 0 :inputcollid 0 :args <> :location 65} :resno 1 :resname current_tenant :ressortgroupref 0 :resorigtbl 0 :resorigcol 0 :resjunk false}) :setOperations <>} :location 57}) :location 54} {CONST :consttype 25 :consttypmod -1 :constcollid 100 :constlen -1 :constbyval false :constisnull false :location 10 :constvalue 9 [ 36 0 0 0 97 92 32 98 99 ]}`

func TestParseNodeTree(t *testing.T) {
	v, err := parseNodeTree(seedTree)
	if err != nil {
		t.Fatal(err)
	}
	n, ok := v.(*node)
	if !ok || n.typ != "OPEXPR" || len(n.list("args")) != 2 {
		t.Fatalf("parsed %#v", v)
	}
	var funcs, depth1 int
	walk(v, 0, nil, func(x *node, d int, _ []*node) {
		if x.typ == "FUNCEXPR" {
			funcs++
			if d == 1 {
				depth1++
			}
		}
	})
	if funcs != 1 || depth1 != 1 {
		t.Errorf("FUNCEXPR count %d, at depth 1: %d", funcs, depth1)
	}
	for _, bad := range []string{"", "{", "{X :a", "(", ")", "{X :a {Y}", "{X :a 1 [ 2"} {
		if _, err := parseNodeTree(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// FuzzParseNodeTree: whatever the text, parsing and walking never panic.
func FuzzParseNodeTree(f *testing.F) {
	f.Add(seedTree)
	f.Add(`{BOOLEXPR :boolop or :args ({NULLTEST :arg {VAR :varno 1} :nulltesttype 0})}`)
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseNodeTree(s)
		if err != nil {
			return
		}
		walk(v, 0, nil, func(n *node, _ int, _ []*node) { _ = sameVar(n.f["a"], n.f["b"]); _ = isCurrentSetting(n) })
	})
}
