//! Rights, amoCRM-style: for each entity and action, a level of access.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Deals,
    Contacts,
    Companies,
    Tasks,
}

impl Entity {
    pub const ALL: [Entity; 4] = [
        Entity::Deals,
        Entity::Contacts,
        Entity::Companies,
        Entity::Tasks,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Deals => "deals",
            Entity::Contacts => "contacts",
            Entity::Companies => "companies",
            Entity::Tasks => "tasks",
        }
    }

    /// The key amoCRM's API uses for this entity's rights.
    pub fn amocrm_key(self) -> &'static str {
        match self {
            Entity::Deals => "leads",
            other => other.as_str(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    View,
    Create,
    Edit,
    Delete,
    Export,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::View,
        Action::Create,
        Action::Edit,
        Action::Delete,
        Action::Export,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::View => "view",
            Action::Create => "create",
            Action::Edit => "edit",
            Action::Delete => "delete",
            Action::Export => "export",
        }
    }

    /// The key amoCRM's API uses for this action (`add` for create).
    pub fn amocrm_key(self) -> &'static str {
        match self {
            Action::Create => "add",
            other => other.as_str(),
        }
    }
}

/// How far a right reaches: every record, the user's group's, the user's own, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    All,
    Group,
    Own,
    None,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::All, Level::Group, Level::Own, Level::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::All => "all",
            Level::Group => "group",
            Level::Own => "own",
            Level::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// amoCRM's letter: A(ll), G(roup), M (only where responsible), D(enied).
    pub fn amocrm_letter(self) -> &'static str {
        match self {
            Level::All => "A",
            Level::Group => "G",
            Level::Own => "M",
            Level::None => "D",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRights {
    pub view: Level,
    pub create: Level,
    pub edit: Level,
    pub delete: Level,
    pub export: Level,
}

impl EntityRights {
    pub fn uniform(level: Level) -> EntityRights {
        EntityRights {
            view: level,
            create: level,
            edit: level,
            delete: level,
            export: level,
        }
    }

    pub fn get(&self, action: Action) -> Level {
        match action {
            Action::View => self.view,
            Action::Create => self.create,
            Action::Edit => self.edit,
            Action::Delete => self.delete,
            Action::Export => self.export,
        }
    }

    pub fn set(&mut self, action: Action, level: Level) {
        match action {
            Action::View => self.view = level,
            Action::Create => self.create = level,
            Action::Edit => self.edit = level,
            Action::Delete => self.delete = level,
            Action::Export => self.export = level,
        }
    }
}

/// The full set of a user's rights. Administrators may do everything, including managing users,
/// groups, roles and the account's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rights {
    pub is_admin: bool,
    pub deals: EntityRights,
    pub contacts: EntityRights,
    pub companies: EntityRights,
    pub tasks: EntityRights,
}

impl Rights {
    pub fn admin() -> Rights {
        let all = EntityRights::uniform(Level::All);
        Rights {
            is_admin: true,
            deals: all,
            contacts: all,
            companies: all,
            tasks: all,
        }
    }

    /// What a new, ordinary user gets unless a role says otherwise: see and work on everything,
    /// delete and export only their own records.
    pub fn member() -> Rights {
        let e = EntityRights {
            view: Level::All,
            create: Level::All,
            edit: Level::All,
            delete: Level::Own,
            export: Level::None,
        };
        Rights {
            is_admin: false,
            deals: e,
            contacts: e,
            companies: e,
            tasks: e,
        }
    }

    pub fn entity(&self, entity: Entity) -> &EntityRights {
        match entity {
            Entity::Deals => &self.deals,
            Entity::Contacts => &self.contacts,
            Entity::Companies => &self.companies,
            Entity::Tasks => &self.tasks,
        }
    }

    pub fn entity_mut(&mut self, entity: Entity) -> &mut EntityRights {
        match entity {
            Entity::Deals => &mut self.deals,
            Entity::Contacts => &mut self.contacts,
            Entity::Companies => &mut self.companies,
            Entity::Tasks => &mut self.tasks,
        }
    }

    pub fn level(&self, entity: Entity, action: Action) -> Level {
        if self.is_admin {
            Level::All
        } else {
            self.entity(entity).get(action)
        }
    }

    /// amoCRM v4's `rights` object for a user (`leads: {view: "A", add: "A", …}`, `is_admin`).
    pub fn to_amocrm_json(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        for entity in Entity::ALL {
            let mut actions = serde_json::Map::new();
            for action in Action::ALL {
                actions.insert(
                    action.amocrm_key().into(),
                    self.level(entity, action).amocrm_letter().into(),
                );
            }
            obj.insert(entity.amocrm_key().into(), actions.into());
        }
        obj.insert("is_admin".into(), self.is_admin.into());
        obj.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admins_reach_everything_and_members_their_defaults() {
        let admin = Rights::admin();
        let member = Rights::member();
        for e in Entity::ALL {
            for a in Action::ALL {
                assert_eq!(admin.level(e, a), Level::All);
            }
        }
        assert_eq!(member.level(Entity::Deals, Action::Delete), Level::Own);
        assert_eq!(member.level(Entity::Contacts, Action::Export), Level::None);
        let json = member.to_amocrm_json();
        assert_eq!(json["leads"]["add"], "A");
        assert_eq!(json["leads"]["delete"], "M");
        assert_eq!(json["is_admin"], false);
    }

    #[test]
    fn rights_survive_storage_as_json() {
        let mut r = Rights::member();
        r.entity_mut(Entity::Tasks).set(Action::Edit, Level::Group);
        let back: Rights = serde_json::from_value(serde_json::to_value(r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.level(Entity::Tasks, Action::Edit), Level::Group);
        assert_eq!(Level::parse("own"), Some(Level::Own));
        assert_eq!(Level::parse("everything"), None);
    }
}
