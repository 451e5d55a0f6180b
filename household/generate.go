package household

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"time"
)

// The size of Baokang county's roster, the benchmark's full county.
const (
	FullCountyHouseholds = 27782
	FullCountyPersons    = 82590
)

// GenerateRoster writes a realistic roster CSV of households households to
// w: valid GB 11643 numbers (region 420626 for most, a neighbouring county
// for some spouses), one head per household and members with plausible
// ages, a mix of categories and a few uninsured persons, spread over
// villages. The number of persons is households scaled by the county's
// ratio (FullCountyPersons for FullCountyHouseholds). The same seed gives
// the same file.
func GenerateRoster(w io.Writer, seed int64, households int, villages []string) error {
	persons := int(int64(households) * FullCountyPersons / FullCountyHouseholds)
	return GenerateRosterSize(w, seed, households, max(persons, households), villages)
}

// GenerateRosterSize is GenerateRoster with an exact number of persons
// (from households to 8 per household).
func GenerateRosterSize(w io.Writer, seed int64, households, persons int, villages []string) error {
	if households < 1 || persons < households || persons > 8*households {
		return fmt.Errorf("generate roster: need 1 or more households and 1 to 8 persons each (got %d households, %d persons)", households, persons)
	}
	if len(villages) == 0 {
		return fmt.Errorf("generate roster: no villages")
	}
	g := &generator{rng: rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)), used: make(map[string]bool, persons)}
	sizes := make([]int, households)
	for i := range sizes {
		sizes[i] = 1
	}
	// Hand out the other members at random: a Poisson-like spread with
	// the right total and at most 8 per household.
	for extra := persons - households; extra > 0; {
		i := g.rng.IntN(households)
		if sizes[i] < 8 {
			sizes[i]++
			extra--
		}
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	cw := csv.NewWriter(bw)
	if err := cw.Write(RosterHeader); err != nil {
		return err
	}
	for i, size := range sizes {
		hid := fmt.Sprintf("420626-%06d", i+1)
		village := villages[g.rng.IntN(len(villages))]
		cat := g.category()
		for _, m := range g.household(size) {
			rec := []string{hid, m.id, m.name, string(m.rel), village, string(cat), strconv.FormatBool(g.rng.IntN(100) < 96)}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

type generator struct {
	rng  *rand.Rand
	used map[string]bool
}

type member struct {
	id, name string
	rel      Relation
}

var (
	surnames   = []rune("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
	givenChars = []rune("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国红梅玉珍凤云飞鹏辉波斌宇浩凯秀兵文志海林春燕晓东德福贵荣生发成永祥金银山水清正")
	// Neighbouring counties a spouse may come from.
	otherRegions = []string{"420625", "420624", "420683", "420323", "420325", "420526"}
	// Nobody in the generated roster is born after this day, so a seed
	// gives the same file whatever the date.
	latestBirth = time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC)
)

func (g *generator) category() Category {
	switch n := g.rng.IntN(100); {
	case n < 62:
		return RegisteredPoor
	case n < 82:
		return Dibao
	case n < 90:
		return Tekun
	default:
		return None
	}
}

func (g *generator) given() string {
	s := string(givenChars[g.rng.IntN(len(givenChars))])
	if g.rng.IntN(100) < 70 {
		s += string(givenChars[g.rng.IntN(len(givenChars))])
	}
	return s
}

func (g *generator) surname() string { return string(surnames[g.rng.IntN(len(surnames))]) }

// birth is a random day of year y (clamped to 1900..latestBirth).
func (g *generator) birth(y int) time.Time {
	d := time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, g.rng.IntN(365))
	if d.After(latestBirth) {
		d = latestBirth.AddDate(0, 0, -g.rng.IntN(300))
	}
	if d.Year() < 1900 {
		d = time.Date(1900, 1, 1+g.rng.IntN(28), 0, 0, 0, 0, time.UTC)
	}
	return d
}

// id returns a fresh valid identity number.
func (g *generator) id(region string, birth time.Time, male bool) string {
	for {
		seq := g.rng.IntN(500) * 2 // even: female
		if male {
			seq++
		}
		s := region + birth.Format("20060102") + fmt.Sprintf("%03d", seq)
		s += string(CheckChar(s))
		if !g.used[s] {
			g.used[s] = true
			return s
		}
		birth = birth.AddDate(0, 0, 1)
		if birth.After(latestBirth) {
			birth = birth.AddDate(0, 0, -400)
		}
	}
}

func (g *generator) household(size int) []member {
	headYear := 1940 + g.rng.IntN(59) // 1940..1998
	headMale := g.rng.IntN(100) < 85
	family := g.surname()
	out := make([]member, 0, size)
	add := func(rel Relation, region, surname string, year int, male bool) {
		b := g.birth(year)
		out = append(out, member{id: g.id(region, b, male), name: surname + g.given(), rel: rel})
	}
	add(Head, "420626", family, headYear, headMale)
	if size > 1 && g.rng.IntN(100) < 85 {
		region := "420626"
		if g.rng.IntN(100) < 15 {
			region = otherRegions[g.rng.IntN(len(otherRegions))]
		}
		add(Spouse, region, g.surname(), headYear-3+g.rng.IntN(7), !headMale)
	}
	parents := 0
	var childYears []int
	for len(out) < size {
		switch n := g.rng.IntN(100); {
		case n < 55 && headYear+20 <= latestBirth.Year():
			y := min(headYear+20+g.rng.IntN(19), latestBirth.Year())
			childYears = append(childYears, y)
			add(Child, "420626", family, y, g.rng.IntN(2) == 0)
		case n < 75 && parents < 2 && headYear-20 >= 1905:
			male := parents == 0 && g.rng.IntN(2) == 0
			sn := family
			if !male && headMale || !male && parents == 1 {
				sn = g.surname()
			}
			add(Parent, "420626", sn, headYear-20-g.rng.IntN(16), male)
			parents++
		case n < 92 && len(childYears) > 0 && childYears[0]+20 <= latestBirth.Year():
			y := min(childYears[0]+20+g.rng.IntN(16), latestBirth.Year())
			add(Grandchild, "420626", family, y, g.rng.IntN(2) == 0)
		default:
			add(Other, "420626", g.surname(), 1940+g.rng.IntN(80), g.rng.IntN(2) == 0)
		}
	}
	return out
}
