with

customers as (

    select * from {{ ref('stg_customers') }}

),

scoring as (

    select * from {{ ref('customer_scoring') }}

),

joined as (

    select
        customers.customer_id,
        nullif(
            trim(coalesce(customers.first_name, '') || ' ' || coalesce(customers.last_name, '')),
            ''
        ) as customer_name,
        customers.email,
        scoring.first_order_date,
        scoring.most_recent_order_date,
        scoring.number_of_orders,
        scoring.lifetime_value

    from customers

    left join scoring
        on customers.customer_id = scoring.customer_id

),

final as (

    select
        cast(customer_id as integer) as customer_id,
        cast(customer_name as varchar) as customer_name,
        cast(email as varchar) as email,
        cast(first_order_date as date) as first_order_date,
        cast(most_recent_order_date as date) as most_recent_order_date,
        cast(number_of_orders as integer) as number_of_orders,
        cast(lifetime_value as decimal(18, 2)) as lifetime_value

    from joined

)

select * from final
