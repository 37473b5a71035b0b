//! A large generated policy for benchmarks and profiling.

use std::fmt::Write as _;

/// A policy with 10,000 assets in 100 segments, 100 requester roles held by 200 people, and
/// 1,000 rules targeting assets by id, by segment and by tag, half of them scheduled.
pub fn generated_policy() -> String {
    let mut s = String::from("[site]\nid = \"bench\"\ntimezone = \"Europe/Berlin\"\n\n");
    s.push_str("[[segments]]\nid = \"corp\"\nzone = \"it\"\nnetworks = [\"10.0.0.0/16\"]\n\n");
    for k in 0..100 {
        writeln!(
            s,
            "[[segments]]\nid = \"seg{k}\"\nzone = \"ot\"\nnetworks = [\"10.1.{k}.0/24\"]\n"
        )
        .unwrap();
    }
    for i in 0..10_000 {
        let k = i / 100;
        let host = i % 100 + 1;
        let safety = if i % 50 == 0 { ", \"safety\"" } else { "" };
        writeln!(
            s,
            "[[assets]]\nid = \"a{i}\"\nkind = \"plc\"\nsegment = \"seg{k}\"\naddress = \"10.1.{k}.{host}:502\"\nprotocol = \"modbus\"\nunit_ids = [1]\ntags = [\"line{k}\"{safety}]\n"
        )
        .unwrap();
    }
    for r in 0..100 {
        writeln!(s, "[[roles]]\nid = \"r{r}\"\nzone = \"it\"\n").unwrap();
    }
    s.push_str("[[roles]]\nid = \"sup\"\nzone = \"ot\"\n\n");
    // A real key (alice's demo key) for everyone: validation checks keys, not their uniqueness.
    for p in 0..200 {
        writeln!(
            s,
            "[[identities.it]]\nid = \"p{p}\"\nkind = \"person\"\nroles = [\"r{}\"]\npublic_key = \"TdAdRByxxfi1s1IMKVNSR0gjEQxET7IKvB4n4L7UWjY=\"\n",
            p % 100
        )
        .unwrap();
    }
    for o in 0..5 {
        writeln!(
            s,
            "[[identities.ot]]\nid = \"s{o}\"\nkind = \"approver\"\nroles = [\"sup\"]\n"
        )
        .unwrap();
    }
    s.push_str(
        "[[schedules]]\nid = \"weekend\"\nweekly = [{ days = [\"sat\"], from = \"06:00\", to = \"10:00\" }, { days = [\"sun\"], from = \"00:00\", to = \"24:00\" }]\n\n",
    );
    for j in 0..1_000 {
        let targets = match j % 3 {
            0 => {
                let ids: Vec<String> = (0..10)
                    .map(|m| format!("\"a{}\"", (j * 7 + m * 13) % 10_000))
                    .collect();
                format!("{{ assets = [{}] }}", ids.join(", "))
            }
            1 => format!("{{ segments = [\"seg{}\"] }}", j % 100),
            _ => format!("{{ tags = [\"line{}\"] }}", j % 100),
        };
        let first = 100 * (j % 5);
        let schedules = if (j / 100) % 2 == 0 {
            "schedules = [\"weekend\"]\n"
        } else {
            ""
        };
        writeln!(
            s,
            "[[rules]]\nid = \"rule{j}\"\nroles = [\"r{}\"]\ntargets = {targets}\noperations = [\"read\", \"write:holding-registers:{first}-{}\"]\n{schedules}max_duration = \"4h\"\napproval = {{ mode = \"approvers\", require = [{{ role = \"sup\", count = 1 }}] }}\nrequirements = {{ ticket = \"^CHG-[0-9]+$\" }}\n",
            j % 100,
            first + 99
        )
        .unwrap();
    }
    s
}
